//! What a database statement does, as the statement metrics label it.

/// What a statement does, by its first keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// `SELECT` (and `WITH … SELECT`).
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// Anything else (DDL, `PRAGMA`, …).
    Other,
}

impl StatementKind {
    /// The kind of `sql`, from its first keyword.
    pub fn of(sql: &str) -> StatementKind {
        let keyword = sql.split_whitespace().next().unwrap_or("");
        if keyword.eq_ignore_ascii_case("select") || keyword.eq_ignore_ascii_case("with") {
            StatementKind::Select
        } else if keyword.eq_ignore_ascii_case("insert") {
            StatementKind::Insert
        } else if keyword.eq_ignore_ascii_case("update") {
            StatementKind::Update
        } else if keyword.eq_ignore_ascii_case("delete") {
            StatementKind::Delete
        } else {
            StatementKind::Other
        }
    }

    /// The statement's keyword, as a span names it (`SELECT`, …, `OTHER`).
    pub fn keyword(self) -> &'static str {
        match self {
            StatementKind::Select => "SELECT",
            StatementKind::Insert => "INSERT",
            StatementKind::Update => "UPDATE",
            StatementKind::Delete => "DELETE",
            StatementKind::Other => "OTHER",
        }
    }
}
