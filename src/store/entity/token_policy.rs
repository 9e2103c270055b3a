//! The `token_policies` table: per organisation and kind, the longest and
//! the default lifetime of new tokens, in nanoseconds (exact: ten years hold
//! about 3.2e17 of them, far below `i64::MAX`).

use sea_orm::entity::prelude::*;

/// One kind's policy in one organisation.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "token_policies")]
pub struct Model {
    /// Organisation.
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: String,
    /// `TokenKind::as_str`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// Longest lifetime, if limited.
    pub max_lifetime_nanos: Option<i64>,
    /// Default lifetime, if any.
    pub default_lifetime_nanos: Option<i64>,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
