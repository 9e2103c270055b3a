//! The `page_token_key` table: the one row holding the page-token key.

use sea_orm::entity::prelude::*;

/// The key row. Never logged: `Debug` of the model is not used anywhere a
/// log could see it, and the core wraps the bytes in a type that prints
/// nothing.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "page_token_key")]
pub struct Model {
    /// Always 1.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    /// 32 random bytes.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
