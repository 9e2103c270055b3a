//! Rotation and token policies: `tokens.rotated_at` and `tokens.replaced_by`
//! (a rotated token's successor), `tokens.revoke_scheduled` (its
//! `revoked_at` is the end of an overlap, not a revoke that happened),
//! `audit_events.replaced_by` (in
//! `token_rotated` events), and `token_policies`, one row per organisation
//! and kind with the lifetimes in nanoseconds. A rotated token's scheduled
//! revocation lives in `revoked_at` (possibly in the future), so the partial
//! unique indexes on active names (`revoked_at IS NULL`) free its name at
//! the rotation.

use sea_orm_migration::prelude::*;

/// Adds the rotation columns and the `token_policies` table.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tokens {
    Table,
    RotatedAt,
    ReplacedBy,
    RevokeScheduled,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    ReplacedBy,
}

#[derive(DeriveIden)]
enum TokenPolicies {
    Table,
    OrgId,
    Kind,
    MaxLifetimeNanos,
    DefaultLifetimeNanos,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite accepts no more.
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(
                        ColumnDef::new(Tokens::RotatedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(ColumnDef::new(Tokens::ReplacedBy).string_len(36).null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(
                        ColumnDef::new(Tokens::RevokeScheduled)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .add_column(
                        ColumnDef::new(AuditEvents::ReplacedBy)
                            .string_len(36)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TokenPolicies::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(TokenPolicies::OrgId).string().not_null())
                    .col(
                        ColumnDef::new(TokenPolicies::Kind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TokenPolicies::MaxLifetimeNanos)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(TokenPolicies::DefaultLifetimeNanos)
                            .big_integer()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TokenPolicies::OrgId)
                            .col(TokenPolicies::Kind),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenPolicies::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .drop_column(AuditEvents::ReplacedBy)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .drop_column(Tokens::ReplacedBy)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .drop_column(Tokens::RevokeScheduled)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .drop_column(Tokens::RotatedAt)
                    .to_owned(),
            )
            .await
    }
}
