//! Indexes behind ListTokens' filters, so that a filtered listing of a large
//! organisation reads the matching rows instead of all of its rows:
//! `owner_user_id` (equality, then in `id` order, as pages are read),
//! `expire_before` and the expired/active states (`expires_at`),
//! `last_used_before` (`last_used_at`, its `IS NULL` arm included). The
//! same SQL is valid on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

/// Adds the ListTokens filter indexes.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, definition) of each index.
const INDEXES: &[(&str, &str)] = &[
    (
        "tokens_org_id_owner_user_id_id",
        "tokens (org_id, owner_user_id, id)",
    ),
    ("tokens_org_id_expires_at", "tokens (org_id, expires_at)"),
    (
        "tokens_org_id_last_used_at",
        "tokens (org_id, last_used_at)",
    ),
];

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        for (name, on) in INDEXES {
            // IF NOT EXISTS: two replicas may migrate at the same moment.
            connection
                .execute_unprepared(&format!("CREATE INDEX IF NOT EXISTS {name} ON {on}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        for (name, _) in INDEXES {
            connection
                .execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
