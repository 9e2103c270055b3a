//! What a database statement does, as the statement metrics label it.

/// What a statement does, by its first keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// `SELECT` (and a `WITH … SELECT` that changes nothing).
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
        if keyword.eq_ignore_ascii_case("with") {
            // A data-modifying CTE (a write and its audit event in one
            // statement) is the write it starts with.
            return sql
                .split_whitespace()
                .map(|word| StatementKind::of_keyword(word.trim_start_matches('(')))
                .find(|kind| *kind != StatementKind::Other && *kind != StatementKind::Select)
                .unwrap_or(StatementKind::Select);
        }
        StatementKind::of_keyword(keyword)
    }

    fn of_keyword(keyword: &str) -> StatementKind {
        if keyword.eq_ignore_ascii_case("select") {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_modifying_cte_is_the_write_it_starts_with() {
        let of = StatementKind::of;
        assert_eq!(
            of(
                "WITH changed AS (UPDATE tokens SET x = 1 RETURNING *), event AS (INSERT INTO a SELECT 1) SELECT * FROM changed"
            ),
            StatementKind::Update
        );
        assert_eq!(
            of("WITH changed AS (INSERT INTO tokens VALUES (1) RETURNING *) SELECT * FROM changed"),
            StatementKind::Insert
        );
        assert_eq!(
            of("WITH x AS (SELECT 1) SELECT * FROM x"),
            StatementKind::Select
        );
        assert_eq!(of("select 1"), StatementKind::Select);
    }
}
