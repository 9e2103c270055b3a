//! Turns an HTTP request (path variables, query string, JSON body) into the
//! request message of its route, as the `google.api.http` rules say: a path
//! variable sets its field; with `body: "*"` every other field comes from the
//! JSON body and the query string carries nothing; without a body, from the
//! query string. The revoke routes of the other wire formats also take their
//! other fields (`reason`) from a JSON body, as their existing clients send
//! them either way.
//!
//! Values are read with the proto3 JSON mapping: path and query values are
//! strings, which the mapping accepts for numbers, 64-bit integers, enums
//! and timestamps; `true`/`false` and enum numbers are read as such. Every
//! bad field is reported, each once: path variables first, then query
//! parameters in their order, then body members (in name order, as the JSON
//! object is read into a sorted map); the message says what is expected and
//! never quotes the value (it may be a secret: see [`DecodeViolation`]).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use prost::{Message, Name};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use crate::rest::json::{JsonError, typed};
use crate::rest::routes::{BodyRule, MatchedRoute, PathParam, Route, WireFormat};

/// Where a value of the request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueSource {
    /// A path variable.
    Path,
    /// A query parameter.
    Query,
    /// A member of the JSON body.
    Body,
}

/// One bad value of a request. Its Debug leaves out `received`, which may be
/// a secret.
#[derive(Clone, PartialEq)]
pub struct DecodeViolation {
    /// The field's proto name (snake_case, as `FieldError.location`), or the
    /// name as received when it names no field.
    pub field: String,
    /// Where the value came from.
    pub source: ValueSource,
    /// What is wrong and what is expected; never the value itself.
    pub message: String,
    /// The value as received (path and query values as JSON strings). It
    /// may be a secret (`AuthenticateTokenRequest.secret`): whoever shows it
    /// to a client blanks those, as `FieldError.value` requires.
    pub received: Value,
}

impl std::fmt::Debug for DecodeViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeViolation")
            .field("field", &self.field)
            .field("source", &self.source)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

/// Why a request does not decode into its message.
#[derive(Debug, thiserror::Error)]
pub enum RequestDecodeError {
    /// The body is not JSON at all (the position of the first error, never
    /// the text).
    #[error("the request body is not valid JSON: {0}")]
    MalformedBody(String),
    /// The body is JSON but not an object.
    #[error("the request body must be a JSON object")]
    BodyNotObject,
    /// A body on a `/v1/` route whose rule has none (a GET).
    #[error("this method takes no request body")]
    BodyNotAllowed,
    /// One or more bad fields.
    #[error("{} request field(s) are not valid", .0.len())]
    Fields(Vec<DecodeViolation>),
    /// The message type asked for is not the route's (a programming error).
    #[error(transparent)]
    Typed(#[from] JsonError),
}

impl MatchedRoute<'_> {
    /// The route's request message from the request's path variables, query
    /// string (the URI's, without `?`) and body.
    pub fn decode(
        &self,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<DynamicMessage, RequestDecodeError> {
        decode(self.route(), self.path_params(), query, body)
    }

    /// [`MatchedRoute::decode`] into the prost type of the route's request
    /// message.
    pub fn decode_as<T: Message + Default + Name>(
        &self,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<T, RequestDecodeError> {
        Ok(typed(&self.decode(query, body)?)?)
    }
}

/// A value placed on its field, before it is read.
struct Member {
    /// Where the value came in the request, to report violations in order.
    order: usize,
    field: FieldDescriptor,
    source: ValueSource,
    value: Value,
}

/// The values of a request, field by field, and what was wrong on the way
/// (each violation with its place in the request).
struct Placement<'r> {
    route: &'r Route,
    seen: usize,
    members: Vec<Member>,
    violations: Vec<(usize, DecodeViolation)>,
}

impl Placement<'_> {
    fn next_order(&mut self) -> usize {
        self.seen += 1;
        self.seen
    }

    fn violation(&mut self, field: &str, source: ValueSource, message: String, received: Value) {
        let order = self.next_order();
        self.violations.push((
            order,
            DecodeViolation {
                field: field.to_owned(),
                source,
                message,
                received,
            },
        ));
    }

    fn member(&mut self, field: FieldDescriptor, source: ValueSource, value: Value) {
        let order = self.next_order();
        self.members.push(Member {
            order,
            field,
            source,
            value,
        });
    }

    /// Places the value that `name` (a JSON or proto field name) was given.
    fn place(&mut self, name: &str, source: ValueSource, value: Value) {
        let input = self.route.input();
        let Some(field) = input
            .get_field_by_json_name(name)
            .or_else(|| input.get_field_by_name(name))
        else {
            let message = format!("is not a field of {}", input.name());
            return self.violation(name, source, message, value);
        };
        if source != ValueSource::Path && self.route.template().binds(&field) {
            let message = "is given by the path; it cannot be given again".to_owned();
            return self.violation(field.name(), source, message, value);
        }
        let existing = self.members.iter_mut().find(|m| m.field == field);
        match existing {
            // `?scopes=a&scopes=b`: a repeated field's query values gather.
            Some(Member {
                source: ValueSource::Query,
                value: Value::Array(items),
                ..
            }) if source == ValueSource::Query => items.push(value),
            Some(_) => {
                let message = "is given more than once".to_owned();
                self.violation(field.name(), source, message, value);
            }
            None => {
                let value = if source == ValueSource::Query && field.is_list() {
                    Value::Array(vec![value])
                } else {
                    value
                };
                self.member(field, source, value);
            }
        }
    }
}

/// A path or query value as the JSON value the mapping reads for `field`:
/// a string, except `true`/`false` for a bool and a number for an enum
/// given by number.
fn text_value(field: &FieldDescriptor, text: &str) -> Value {
    match field.kind() {
        Kind::Bool if text == "true" => Value::Bool(true),
        Kind::Bool if text == "false" => Value::Bool(false),
        Kind::Enum(_) => match text.parse::<i32>() {
            Ok(number) => Value::from(number),
            Err(_) => Value::String(text.to_owned()),
        },
        _ => Value::String(text.to_owned()),
    }
}

/// What a field's JSON value must be, for the violation message.
fn expectation(field: &FieldDescriptor) -> String {
    let one = match field.kind() {
        Kind::Int32
        | Kind::Sint32
        | Kind::Sfixed32
        | Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64 => "an integer (a JSON number or a string of digits)".to_owned(),
        Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64 => {
            "a non-negative integer (a JSON number or a string of digits)".to_owned()
        }
        Kind::Float | Kind::Double => "a number".to_owned(),
        Kind::Bool => "true or false".to_owned(),
        Kind::String => "a string".to_owned(),
        Kind::Bytes => "a base64 string".to_owned(),
        Kind::Enum(values) => {
            let names: Vec<String> = values
                .values()
                .map(|value| value.name().to_owned())
                .collect();
            format!("one of {}", names.join(", "))
        }
        Kind::Message(message) if message.full_name() == "google.protobuf.Timestamp" => {
            "an RFC 3339 timestamp between years 1 and 9999, such as 2030-01-01T00:00:00Z"
                .to_owned()
        }
        Kind::Message(message) => format!("a JSON object of {}", message.name()),
    };
    if field.is_list() {
        format!("must be a list, each item {one}")
    } else {
        format!("must be {one}")
    }
}

/// `+` as a space, then percent-decoding (`application/x-www-form-urlencoded`);
/// `None` when the bytes are not UTF-8.
fn form_decode(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

/// The body's members, or `None` for an empty body.
fn body_members(
    route: &Route,
    body: &[u8],
) -> Result<Option<Map<String, Value>>, RequestDecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if route.body() == BodyRule::None && route.rpc().wire_format() == WireFormat::ProtoJson {
        return Err(RequestDecodeError::BodyNotAllowed);
    }
    // serde_json's syntax errors name a line and a column, never the text.
    match serde_json::from_slice(body) {
        Ok(Value::Object(members)) => Ok(Some(members)),
        Ok(_) => Err(RequestDecodeError::BodyNotObject),
        Err(error) => Err(RequestDecodeError::MalformedBody(error.to_string())),
    }
}

fn decode(
    route: &Route,
    path_params: &[PathParam],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, RequestDecodeError> {
    let body = body_members(route, body)?;
    let mut placement = Placement {
        route,
        seen: 0,
        members: Vec::new(),
        violations: Vec::new(),
    };
    for param in path_params {
        let field = param.field();
        match percent_decode_str(param.raw()).decode_utf8() {
            Ok(text) => {
                placement.member(field.clone(), ValueSource::Path, text_value(field, &text))
            }
            Err(_) => placement.violation(
                field.name(),
                ValueSource::Path,
                "is not UTF-8 once percent-decoded".to_owned(),
                Value::String(param.raw().to_owned()),
            ),
        }
    }
    let pairs = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty());
    for pair in pairs {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(name), Some(text)) = (form_decode(raw_name), form_decode(raw_value)) else {
            let message = "is not UTF-8 once percent-decoded".to_owned();
            placement.violation(
                raw_name,
                ValueSource::Query,
                message,
                Value::String(raw_value.to_owned()),
            );
            continue;
        };
        if route.body() == BodyRule::Whole {
            let message =
                "is not a query parameter: this method reads its fields from the JSON body"
                    .to_owned();
            placement.violation(&name, ValueSource::Query, message, Value::String(text));
            continue;
        }
        let value = match route
            .input()
            .get_field_by_json_name(&name)
            .or_else(|| route.input().get_field_by_name(&name))
        {
            Some(field) => text_value(&field, &text),
            None => Value::String(text),
        };
        placement.place(&name, ValueSource::Query, value);
    }
    for (name, value) in body.into_iter().flatten() {
        placement.place(&name, ValueSource::Body, value);
    }
    read_members(route.input(), placement.members, placement.violations)
}

/// Reads each placed value with the proto3 JSON mapping, one field at a
/// time so that every bad field is named.
fn read_members(
    input: &MessageDescriptor,
    members: Vec<Member>,
    mut violations: Vec<(usize, DecodeViolation)>,
) -> Result<DynamicMessage, RequestDecodeError> {
    let mut message = DynamicMessage::new(input.clone());
    for member in members {
        let mut one = Map::new();
        one.insert(member.field.json_name().to_owned(), member.value.clone());
        match DynamicMessage::deserialize(input.clone(), Value::Object(one)) {
            Ok(mut read) => {
                // JSON `null` leaves the field at its default.
                if let Some(value) = read.take_field(&member.field) {
                    message.set_field(&member.field, value);
                }
            }
            Err(_) => violations.push((
                member.order,
                DecodeViolation {
                    field: member.field.name().to_owned(),
                    source: member.source,
                    message: expectation(&member.field),
                    received: member.value,
                },
            )),
        }
    }
    if violations.is_empty() {
        return Ok(message);
    }
    violations.sort_by_key(|(order, _)| *order);
    Err(RequestDecodeError::Fields(
        violations
            .into_iter()
            .map(|(_, violation)| violation)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use http::Method;
    use prost_types::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::grpc::proto::{
        CreateTokenRequest, DeleteWorkspaceApiKeyRequest, GetTokenRequest, ListTokensRequest,
        RevokePersonalAccessTokenRequest, RevokeScrapeTokenRequest,
        RevokeServiceAccountTokenRequest, TokenKind,
    };
    use crate::rest::routes::tests::{route_for, table, table_of};
    use crate::rest::routes::{RouteMatch, RouteTable, Rpc};

    fn decode_as<T: Message + Default + Name>(
        table: &RouteTable,
        method: Method,
        uri: &str,
        body: &str,
    ) -> Result<T, RequestDecodeError> {
        let (path, query) = match uri.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (uri, None),
        };
        match table.find(&method, path) {
            RouteMatch::Found(matched) => matched.decode_as(query, body.as_bytes()),
            other => panic!("{method} {uri}: {other:?}"),
        }
    }

    /// (field, source, received) of each violation.
    fn violations(error: RequestDecodeError) -> Vec<(String, ValueSource, Value)> {
        match error {
            RequestDecodeError::Fields(list) => list
                .into_iter()
                .map(|v| {
                    assert!(!v.message.is_empty());
                    (v.field, v.source, v.received)
                })
                .collect(),
            other => panic!("not field violations: {other:?}"),
        }
    }

    fn violation(
        field: &str,
        source: ValueSource,
        received: Value,
    ) -> (String, ValueSource, Value) {
        (field.to_owned(), source, received)
    }

    #[test]
    fn path_variables_set_their_fields() {
        let table = table();
        let get: GetTokenRequest = decode_as(&table, Method::GET, "/v1/tokens/42", "").unwrap();
        assert_eq!(get.id, 42);
        let revoke: RevokeServiceAccountTokenRequest = decode_as(
            &table,
            Method::DELETE,
            "/service-accounts/builder/tokens/ci-deploy?reason=rotated+by%20ops",
            "",
        )
        .unwrap();
        assert_eq!(revoke.service_account_slug, "builder");
        assert_eq!(revoke.token_slug, "ci-deploy");
        assert_eq!(revoke.reason, "rotated by ops");
        // Path values are percent-decoded (`+` stays a plus there).
        let delete: DeleteWorkspaceApiKeyRequest = decode_as(
            &table,
            Method::DELETE,
            "/workspaces/g-0123456789/apikeys/deploy%20key%2F2+x",
            "",
        )
        .unwrap();
        assert_eq!(delete.workspace_id, "g-0123456789");
        assert_eq!(delete.key_name, "deploy key/2+x");
    }

    #[test]
    fn bad_path_values_name_their_field() {
        let table = table();
        let error =
            decode_as::<GetTokenRequest>(&table, Method::GET, "/v1/tokens/abc", "").unwrap_err();
        assert_eq!(
            violations(error),
            vec![violation("id", ValueSource::Path, json!("abc"))]
        );
        let error = decode_as::<RevokePersonalAccessTokenRequest>(
            &table,
            Method::DELETE,
            "/api/v2/personal_access_tokens/%FF",
            "",
        )
        .unwrap_err();
        assert_eq!(
            violations(error),
            vec![violation("token_id", ValueSource::Path, json!("%FF"))]
        );
    }

    #[test]
    fn query_parameters_fill_a_get_by_json_or_proto_name() {
        let table = table();
        let list: ListTokensRequest = decode_as(
            &table,
            Method::GET,
            "/v1/tokens?kind=TOKEN_KIND_SCRAPE&showRevoked=true&page_size=10&pageToken=abc&serviceAccountSlug=",
            "",
        )
        .unwrap();
        assert_eq!(
            list,
            ListTokensRequest {
                kind: TokenKind::Scrape.into(),
                service_account_slug: String::new(),
                workspace_id: String::new(),
                show_revoked: true,
                page_size: 10,
                page_token: "abc".into(),
                ..Default::default()
            }
        );
        let by_number: ListTokensRequest = decode_as(
            &table,
            Method::GET,
            "/v1/tokens?kind=4&show_revoked=false",
            "",
        )
        .unwrap();
        assert_eq!(by_number.kind, TokenKind::WorkspaceApiKey as i32);
        assert!(!by_number.show_revoked);
    }

    #[test]
    fn bad_query_parameters_are_each_reported_once() {
        let table = table();
        let error = decode_as::<ListTokensRequest>(
            &table,
            Method::GET,
            "/v1/tokens?showRevoked=yes&nope=1&pageSize=1&page_size=2&kind=TOKEN_KIND_NOPE&pageSize=x%FF",
            "",
        )
        .unwrap_err();
        assert_eq!(
            violations(error),
            vec![
                violation("show_revoked", ValueSource::Query, json!("yes")),
                violation("nope", ValueSource::Query, json!("1")),
                violation("page_size", ValueSource::Query, json!("2")),
                violation("kind", ValueSource::Query, json!("TOKEN_KIND_NOPE")),
                violation("pageSize", ValueSource::Query, json!("x%FF")),
            ]
        );
    }

    #[test]
    fn a_body_fills_a_post_with_the_canonical_mapping() {
        let table = table();
        let create: CreateTokenRequest = decode_as(
            &table,
            Method::POST,
            "/v1/tokens",
            r#"{"kind": "TOKEN_KIND_SERVICE_ACCOUNT", "name": "ci", "service_account_slug": "builder",
                "scopes": ["a", "b"], "expireTime": "2030-01-01T00:00:00Z", "workspaceId": null}"#,
        )
        .unwrap();
        assert_eq!(
            create,
            CreateTokenRequest {
                kind: TokenKind::ServiceAccount.into(),
                name: "ci".into(),
                service_account_slug: "builder".into(),
                workspace_id: String::new(),
                scopes: vec!["a".into(), "b".into()],
                expire_time: Some(Timestamp {
                    seconds: 1_893_456_000,
                    nanos: 0
                }),
            }
        );
        // No body is the empty request (the core then says what is missing).
        let empty: CreateTokenRequest =
            decode_as(&table, Method::POST, "/v1/tokens", " \n").unwrap();
        assert_eq!(empty, CreateTokenRequest::default());
    }

    #[test]
    fn every_bad_body_member_is_reported() {
        let table = table();
        let error = decode_as::<CreateTokenRequest>(
            &table,
            Method::POST,
            "/v1/tokens?name=x",
            r#"{"kind": "NOPE", "expireTime": "tomorrow", "scopes": "a", "extra": 1,
                "name": 5, "serviceAccountSlug": "a", "service_account_slug": "b"}"#,
        )
        .unwrap_err();
        assert_eq!(
            violations(error),
            vec![
                // Fields of a `body: "*"` method come from the body only.
                violation("name", ValueSource::Query, json!("x")),
                // Body members, in name order.
                violation("expire_time", ValueSource::Body, json!("tomorrow")),
                violation("extra", ValueSource::Body, json!(1)),
                violation("kind", ValueSource::Body, json!("NOPE")),
                violation("name", ValueSource::Body, json!(5)),
                violation("scopes", ValueSource::Body, json!("a")),
                violation("service_account_slug", ValueSource::Body, json!("b")),
            ]
        );
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused_whole() {
        let table = table();
        for (body, expected) in [
            ("{\"name\": ", "MalformedBody"),
            ("not json", "MalformedBody"),
            ("[]", "BodyNotObject"),
            ("\"secret\"", "BodyNotObject"),
        ] {
            let error = decode_as::<CreateTokenRequest>(&table, Method::POST, "/v1/tokens", body)
                .unwrap_err();
            let name = match &error {
                RequestDecodeError::MalformedBody(detail) => {
                    assert!(!detail.contains("not json"), "{detail}");
                    "MalformedBody"
                }
                RequestDecodeError::BodyNotObject => "BodyNotObject",
                other => panic!("{body}: {other:?}"),
            };
            assert_eq!(name, expected, "{body}");
        }
        // A GET of the JSON API takes no body.
        let error =
            decode_as::<ListTokensRequest>(&table, Method::GET, "/v1/tokens", "{}").unwrap_err();
        assert!(
            matches!(error, RequestDecodeError::BodyNotAllowed),
            "{error:?}"
        );
    }

    #[test]
    fn the_revoke_routes_also_take_reason_from_a_json_body() {
        let table = table();
        let revoke: RevokeScrapeTokenRequest = decode_as(
            &table,
            Method::DELETE,
            "/api/integrations/prometheus-tokens/7",
            r#"{"reason": "leaked"}"#,
        )
        .unwrap();
        assert_eq!((revoke.id, revoke.reason.as_str()), (7, "leaked"));
        // But not a path field again, and not the same field twice.
        let error = decode_as::<DeleteWorkspaceApiKeyRequest>(
            &table,
            Method::DELETE,
            "/workspaces/g-0123456789/apikeys/k?reason=a",
            r#"{"workspaceId": "g-9999999999", "reason": "b"}"#,
        )
        .unwrap_err();
        assert_eq!(
            violations(error),
            vec![
                violation("reason", ValueSource::Body, json!("b")),
                violation("workspace_id", ValueSource::Body, json!("g-9999999999")),
            ]
        );
    }

    #[test]
    fn repeated_fields_gather_their_query_values() {
        // No served GET has a repeated field yet; the rule is http.proto's.
        let json = crate::rest::json::ProtoJson::load().unwrap();
        let input = json.descriptor_of::<CreateTokenRequest>().unwrap();
        let route = route_for(Rpc::CreateToken, Method::GET, "/x", &input);
        let table = table_of(vec![route]);
        let create: CreateTokenRequest =
            decode_as(&table, Method::GET, "/x?scopes=a&scopes=b&name=n", "").unwrap();
        assert_eq!(create.scopes, vec!["a", "b"]);
        assert_eq!(create.name, "n");
    }

    #[test]
    fn a_route_decodes_only_into_its_own_message() {
        let table = table();
        let error =
            decode_as::<ListTokensRequest>(&table, Method::GET, "/v1/tokens/1", "").unwrap_err();
        assert!(matches!(
            error,
            RequestDecodeError::Typed(JsonError::WrongMessage { .. })
        ));
    }

    #[test]
    fn debug_of_a_violation_never_shows_the_received_value() {
        let secret = "tk_live_0123456789abcdefSECRET";
        let violation = DecodeViolation {
            field: "secret".to_owned(),
            source: ValueSource::Body,
            message: "must be a string".to_owned(),
            received: json!(secret),
        };
        let shown = format!("{violation:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(
            shown.contains("secret"),
            "the field is still named: {shown}"
        );
        let error = RequestDecodeError::Fields(vec![violation]);
        let shown = format!("{error:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
