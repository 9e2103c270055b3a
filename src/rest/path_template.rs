//! Path templates of `google.api.http` rules (`/v1/tokens/{id}:rotate`):
//! parsing a template once, and matching a request path against it into the
//! path variables it binds. Kept apart from the route table, which decides
//! which template belongs to which RPC.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

/// Why a path template cannot be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A template starts with `/`.
    #[error("does not start with `/`")]
    NotAbsolute,
    /// `//`, or a trailing `/`.
    #[error("has an empty segment")]
    EmptySegment,
    /// Wildcards (`*`, `**`), nested field paths (`{a.b}`), variables with
    /// their own template (`{name=…}`), and literals outside
    /// `A-Z a-z 0-9 - . _ ~` are not supported: no tokend route needs them.
    #[error(
        "has segment `{0}`; only literals of A-Z a-z 0-9 - . _ ~ and `{{field}}` are supported"
    )]
    UnsupportedSegment(String),
    /// The text after the last `:` is not a literal.
    #[error("has verb `{0}`, which is not a literal of A-Z a-z 0-9 - . _ ~")]
    BadVerb(String),
    /// A variable that names no field of the request message.
    #[error("binds `{field}`, which is not a field of {message}")]
    UnknownField {
        /// The variable.
        field: String,
        /// The request message's full name.
        message: String,
    },
    /// Only singular scalar and enum fields can be bound to the path.
    #[error("binds `{0}`, which is a list, a map or a message")]
    NotBindable(String),
    /// A field bound by two variables.
    #[error("binds `{0}` twice")]
    BoundTwice(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Field(FieldDescriptor),
}

/// A parsed `google.api.http` path template: literal segments, variables
/// that each bind one field of the request message, and an optional
/// `:verb` (a custom method, such as `/v1/tokens:authenticate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    pub(crate) text: String,
    segments: Vec<Segment>,
    pub(crate) verb: Option<String>,
}

/// RFC 3986 unreserved characters: what a literal may hold, so that it
/// compares with the raw (still percent-encoded) request path as it is.
fn is_literal(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn is_identifier(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits `segments:verb` (the text after the leading `/`) at the verb's
/// colon: the last `:` of the last segment that is not inside a variable.
fn split_verb(rest: &str) -> Result<(&str, Option<&str>), TemplateError> {
    let last_start = rest.rfind('/').map_or(0, |slash| slash + 1);
    let last = &rest[last_start..];
    let after_variable = last.rfind('}').map_or(0, |brace| brace + 1);
    match last[after_variable..].find(':') {
        None => Ok((rest, None)),
        Some(colon) => {
            let at = last_start + after_variable + colon;
            let verb = &rest[at + 1..];
            if !is_literal(verb) {
                return Err(TemplateError::BadVerb(verb.to_owned()));
            }
            Ok((&rest[..at], Some(verb)))
        }
    }
}

impl PathTemplate {
    /// Parses `text` and binds its variables to fields of `input`.
    pub fn parse(text: &str, input: &MessageDescriptor) -> Result<PathTemplate, TemplateError> {
        let rest = text.strip_prefix('/').ok_or(TemplateError::NotAbsolute)?;
        let (rest, verb) = split_verb(rest)?;
        let mut segments = Vec::new();
        for part in rest.split('/') {
            if part.is_empty() {
                return Err(TemplateError::EmptySegment);
            }
            let variable = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
            let segment = match variable {
                Some(name) if is_identifier(name) => {
                    let field = input.get_field_by_name(name).ok_or_else(|| {
                        TemplateError::UnknownField {
                            field: name.to_owned(),
                            message: input.full_name().to_owned(),
                        }
                    })?;
                    if field.is_list() || field.is_map() || matches!(field.kind(), Kind::Message(_))
                    {
                        return Err(TemplateError::NotBindable(name.to_owned()));
                    }
                    if segments.contains(&Segment::Field(field.clone())) {
                        return Err(TemplateError::BoundTwice(name.to_owned()));
                    }
                    Segment::Field(field)
                }
                None if is_literal(part) => Segment::Literal(part.to_owned()),
                Some(_) | None => return Err(TemplateError::UnsupportedSegment(part.to_owned())),
            };
            segments.push(segment);
        }
        Ok(PathTemplate {
            text: text.to_owned(),
            segments,
            verb: verb.map(str::to_owned),
        })
    }

    /// The template as written in the proto, e.g. `/v1/tokens/{id}`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a variable of the template binds `field`.
    pub fn binds(&self, field: &FieldDescriptor) -> bool {
        self.segments
            .iter()
            .any(|segment| matches!(segment, Segment::Field(bound) if bound == field))
    }

    /// The raw (still percent-encoded) value of each variable when `path`
    /// matches the template. A variable matches one non-empty segment; with
    /// no verb in the template, a `:` in the last segment is part of the
    /// value (key names may hold one).
    pub(crate) fn bind(&self, path: &str) -> Option<Vec<PathParam>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let mut parts = rest.split('/');
        let mut params = Vec::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(literal) if part == literal => {}
                Segment::Literal(_) => return None,
                Segment::Field(_) if part.is_empty() => return None,
                Segment::Field(field) => params.push(PathParam {
                    field: field.clone(),
                    raw: part.to_owned(),
                }),
            }
        }
        parts.next().is_none().then_some(params)
    }

    /// Whether some path matches both templates.
    pub(crate) fn overlaps(&self, other: &PathTemplate) -> bool {
        self.verb == other.verb
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Field(_), _) | (_, Segment::Field(_)) => true,
                })
    }
}

/// One path variable of a matched request, before percent-decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathParam {
    field: FieldDescriptor,
    raw: String,
}

impl PathParam {
    /// The request field the variable binds.
    pub fn field(&self) -> &FieldDescriptor {
        &self.field
    }

    /// The segment as it was in the request path (percent-encoded).
    pub fn raw(&self) -> &str {
        &self.raw
    }
}
