//! The proto3 JSON mapping of tokend's messages: lowerCamelCase names,
//! 64-bit integers as strings, enums by name, `Timestamp` as an RFC 3339
//! string.
//!
//! The mapping is driven by the descriptor set that build.rs writes (through
//! prost-reflect), not by code generated per message: the generated prost
//! types stay exactly those the gRPC side uses (`prost_types::Timestamp`
//! included), and a message is carried across by its binary encoding, which
//! both sides share by construction.

use prost::{Message, Name};
use prost_reflect::{
    DescriptorError, DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor,
    ReflectMessage, SerializeOptions,
};

use crate::grpc::proto::FILE_DESCRIPTOR_SET;

/// Why a message could not be carried between its prost type and JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The descriptor set has no message of this name: the Rust type does
    /// not come from tokend's protos.
    #[error("no message `{0}` in the descriptor set")]
    UnknownMessage(String),
    /// A message was decoded into a type of another message.
    #[error("a `{found}` message where a `{expected}` was expected")]
    WrongMessage {
        /// The full name of the type asked for.
        expected: String,
        /// The full name of the message at hand.
        found: String,
    },
    /// The binary form did not decode (a descriptor that does not match the
    /// generated type).
    #[error("binary transcoding failed: {0}")]
    Transcode(#[from] prost::DecodeError),
    /// JSON text that is not valid JSON or not the message's JSON form, or a
    /// value JSON cannot express (a `Timestamp` outside years 1–9999).
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// The descriptor pool of tokend's protos and the JSON mapping over it.
#[derive(Clone, Debug)]
pub struct ProtoJson {
    pool: DescriptorPool,
}

impl ProtoJson {
    /// Reads the descriptor set compiled into the binary.
    pub fn load() -> Result<ProtoJson, DescriptorError> {
        Ok(ProtoJson {
            pool: DescriptorPool::decode(FILE_DESCRIPTOR_SET)?,
        })
    }

    /// Every file of tokend's protos, with their imports and options.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The descriptor of `T`'s message.
    pub fn descriptor_of<T: Name>(&self) -> Result<MessageDescriptor, JsonError> {
        let name = T::full_name();
        self.pool
            .get_message_by_name(&name)
            .ok_or(JsonError::UnknownMessage(name))
    }

    /// `message` as a JSON document in the canonical mapping (fields that
    /// hold their default value are left out, as the mapping allows).
    pub fn to_json<T: Message + Name>(&self, message: &T) -> Result<Vec<u8>, JsonError> {
        let dynamic = DynamicMessage::decode(
            self.descriptor_of::<T>()?,
            message.encode_to_vec().as_slice(),
        )?;
        let mut out = serde_json::Serializer::new(Vec::new());
        dynamic.serialize_with_options(&mut out, &SerializeOptions::new())?;
        Ok(out.into_inner())
    }

    /// A `T` from its JSON document. Unknown fields are refused; both the
    /// lowerCamelCase and the proto field names are accepted, as the mapping
    /// requires of parsers.
    pub fn from_json<T: Message + Default + Name>(&self, json: &[u8]) -> Result<T, JsonError> {
        let mut input = serde_json::Deserializer::from_slice(json);
        let dynamic = DynamicMessage::deserialize_with_options(
            self.descriptor_of::<T>()?,
            &mut input,
            &DeserializeOptions::new(),
        )?;
        input.end()?;
        typed(&dynamic)
    }
}

/// The prost value of a dynamic message, checked to be a message of `T`'s
/// type.
pub fn typed<T: Message + Default + Name>(dynamic: &DynamicMessage) -> Result<T, JsonError> {
    let found = dynamic.descriptor().full_name().to_owned();
    let expected = T::full_name();
    if found != expected {
        return Err(JsonError::WrongMessage { expected, found });
    }
    Ok(dynamic.transcode_to::<T>()?)
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;
    use serde_json::{Value, json};

    use super::*;
    use crate::grpc::proto::{CreateTokenRequest, GetTokenRequest, Token, TokenKind};

    fn json() -> ProtoJson {
        ProtoJson::load().expect("the compiled descriptor set decodes")
    }

    fn parsed(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("to_json writes JSON")
    }

    fn token() -> Token {
        Token {
            id: 9_007_199_254_740_993, // 2^53 + 1: a JSON number would round it
            token_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            kind: TokenKind::ServiceAccount.into(),
            org_id: "org-1".into(),
            name: "ci-deploy".into(),
            owner_user_id: "user-1".into(),
            service_account_slug: "builder".into(),
            workspace_id: String::new(),
            scopes: vec!["metrics:read".into(), "logs:read".into()],
            create_time: Some(Timestamp {
                seconds: 1_795_000_000,
                nanos: 0,
            }),
            expire_time: Some(Timestamp {
                seconds: 1_900_000_000,
                nanos: 500_000_000,
            }),
            revoke_time: None,
            last_used_time: None,
            created_by: "user-1".into(),
            revoked_by: String::new(),
            revoke_reason: String::new(),
            replaced_by: String::new(),
            rotate_time: None,
        }
    }

    #[test]
    fn a_token_round_trips_in_the_canonical_mapping() {
        let json = json();
        let original = token();
        let text = json.to_json(&original).unwrap();
        assert_eq!(
            parsed(&text),
            json!({
                "id": "9007199254740993",
                "tokenId": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                "kind": "TOKEN_KIND_SERVICE_ACCOUNT",
                "orgId": "org-1",
                "name": "ci-deploy",
                "ownerUserId": "user-1",
                "serviceAccountSlug": "builder",
                "scopes": ["metrics:read", "logs:read"],
                "createTime": "2026-11-18T11:06:40Z",
                "expireTime": "2030-03-17T17:46:40.500Z",
                "createdBy": "user-1",
            })
        );
        assert_eq!(json.from_json::<Token>(&text).unwrap(), original);
    }

    #[test]
    fn a_create_token_request_round_trips_in_the_canonical_mapping() {
        let json = json();
        let original = CreateTokenRequest {
            kind: TokenKind::WorkspaceApiKey.into(),
            name: "deploy key".into(),
            service_account_slug: String::new(),
            workspace_id: "g-0123456789".into(),
            scopes: vec!["read".into()],
            expire_time: Some(Timestamp {
                seconds: 1_900_000_000,
                nanos: 0,
            }),
        };
        let text = json.to_json(&original).unwrap();
        assert_eq!(
            parsed(&text),
            json!({
                "kind": "TOKEN_KIND_WORKSPACE_API_KEY",
                "name": "deploy key",
                "workspaceId": "g-0123456789",
                "scopes": ["read"],
                "expireTime": "2030-03-17T17:46:40Z",
            })
        );
        assert_eq!(
            json.from_json::<CreateTokenRequest>(&text).unwrap(),
            original
        );
    }

    #[test]
    fn parsing_accepts_what_the_mapping_allows_and_refuses_the_rest() {
        let json = json();
        // Proto field names, an enum by number, an int64 as a JSON number and
        // a timestamp with an offset are all valid input.
        let request: CreateTokenRequest = json
            .from_json(
                br#"{"kind": 1, "service_account_slug": "", "expire_time": "2030-01-01T01:00:00+01:00"}"#,
            )
            .unwrap();
        assert_eq!(request.kind, TokenKind::Scrape as i32);
        assert_eq!(
            request.expire_time,
            Some(Timestamp {
                seconds: 1_893_456_000,
                nanos: 0
            })
        );
        assert_eq!(
            json.from_json::<GetTokenRequest>(br#"{"id": 12}"#)
                .unwrap()
                .id,
            12
        );
        for bad in [
            &br#"{"nope": 1}"#[..],
            br#"{"kind": "TOKEN_KIND_NOPE"}"#,
            br#"{"expireTime": "tomorrow"}"#,
            br#"{"scopes": "one"}"#,
            br#"{"name": "a"} trailing"#,
            b"[]",
        ] {
            assert!(
                json.from_json::<CreateTokenRequest>(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_dynamic_message_is_only_typed_as_its_own_type() {
        let json = json();
        let dynamic = DynamicMessage::new(json.descriptor_of::<GetTokenRequest>().unwrap());
        assert!(matches!(
            typed::<Token>(&dynamic),
            Err(JsonError::WrongMessage { .. })
        ));
        assert_eq!(typed::<GetTokenRequest>(&dynamic).unwrap().id, 0);
    }
}
