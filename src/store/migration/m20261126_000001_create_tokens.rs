//! The tokens and audit_events tables and their indexes.

use sea_orm_migration::prelude::*;

/// Creates `tokens` and `audit_events`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
    TokenId,
    Kind,
    OrgId,
    Name,
    OwnerUserId,
    ServiceAccountSlug,
    WorkspaceId,
    Scopes,
    SecretHash,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
    LastUsedAt,
    CreatedBy,
    RevokedBy,
    RevokeReason,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    EventType,
    OrgId,
    Actor,
    TokenId,
    TokenNumericId,
    TokenKind,
    RequestId,
    OccurredAt,
    Reason,
}

/// Indexes that sea-query's builder cannot express portably (partial
/// indexes); the same SQL is valid on SQLite and PostgreSQL.
const RAW_INDEXES: &[&str] = &[
    // Active names are unique per service account and per workspace. A revoked
    // token frees its name; an expired one keeps it until it is revoked.
    "CREATE UNIQUE INDEX tokens_active_service_account_name ON tokens (org_id, service_account_slug, name) WHERE revoked_at IS NULL AND kind = 'service_account'",
    "CREATE UNIQUE INDEX tokens_active_workspace_key_name ON tokens (org_id, workspace_id, name) WHERE revoked_at IS NULL AND kind = 'workspace_api_key'",
    "CREATE INDEX tokens_org_id_id ON tokens (org_id, id)",
    "CREATE INDEX audit_events_org_id_id ON audit_events (org_id, id)",
];

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tokens::Table)
                    .col(
                        ColumnDef::new(Tokens::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Tokens::TokenId)
                            .string_len(36)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Tokens::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(Tokens::OrgId).string().not_null())
                    .col(ColumnDef::new(Tokens::Name).string().not_null())
                    .col(ColumnDef::new(Tokens::OwnerUserId).string().not_null())
                    .col(
                        ColumnDef::new(Tokens::ServiceAccountSlug)
                            .string_len(63)
                            .null(),
                    )
                    .col(ColumnDef::new(Tokens::WorkspaceId).string_len(12).null())
                    .col(ColumnDef::new(Tokens::Scopes).text().not_null())
                    .col(
                        ColumnDef::new(Tokens::SecretHash)
                            .binary()
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(Tokens::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tokens::ExpiresAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Tokens::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Tokens::LastUsedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Tokens::CreatedBy).string().not_null())
                    .col(ColumnDef::new(Tokens::RevokedBy).string().null())
                    .col(ColumnDef::new(Tokens::RevokeReason).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(
                        ColumnDef::new(AuditEvents::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::EventType)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::OrgId).string().not_null())
                    .col(ColumnDef::new(AuditEvents::Actor).string().not_null())
                    .col(
                        ColumnDef::new(AuditEvents::TokenId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::TokenNumericId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::TokenKind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::RequestId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::Reason).text().null())
                    .to_owned(),
            )
            .await?;
        let connection = manager.get_connection();
        for statement in RAW_INDEXES {
            connection.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Tokens::Table).to_owned())
            .await
    }
}
