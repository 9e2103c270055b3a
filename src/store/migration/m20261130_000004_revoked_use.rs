//! `tokens.revoked_use_recorded_at`: when a use of a revoked token was last
//! written as a `revoked_token_used` audit event. The writer's conditional
//! update of this column, in the same transaction as the event, keeps the
//! events to one a minute per token across replicas. Nullable, so adding
//! it rewrites no row.

use sea_orm_migration::prelude::*;

/// Adds `tokens.revoked_use_recorded_at`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tokens {
    Table,
    RevokedUseRecordedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Two replicas may migrate at the same moment: migrations are
        // serialised by an advisory lock (PostgreSQL) or the write lock
        // (SQLite), and a finished one is recorded, so this runs once.
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(
                        ColumnDef::new(Tokens::RevokedUseRecordedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .drop_column(Tokens::RevokedUseRecordedAt)
                    .to_owned(),
            )
            .await
    }
}
