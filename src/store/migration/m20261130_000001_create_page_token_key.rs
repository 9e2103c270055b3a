//! The `page_token_key` table: one row holding the random key that binds
//! page tokens (HMAC-SHA256). It lives in the database so that every
//! replica sharing the database uses the same key: a page token made by one
//! replica is accepted by all of them.

use rand::TryRngCore;
use rand::rngs::OsRng;
use sea_orm_migration::prelude::*;

/// Creates `page_token_key` and stores a fresh random key in it.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PageTokenKey {
    Table,
    Id,
    Secret,
}

/// The one row's id; a CHECK keeps the table to that row.
const ONLY_ROW: i32 = 1;

/// Bytes of key: the HMAC-SHA256 output size.
const KEY_LEN: usize = 32;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    // Creating the table and storing the key commit together, on SQLite
    // too: no replica can ever see the table without its key.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PageTokenKey::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PageTokenKey::Id)
                            .integer()
                            .not_null()
                            .primary_key()
                            .check(Expr::col(PageTokenKey::Id).eq(ONLY_ROW)),
                    )
                    .col(ColumnDef::new(PageTokenKey::Secret).binary().not_null())
                    .to_owned(),
            )
            .await?;
        let mut key = [0u8; KEY_LEN];
        OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| DbErr::Custom(format!("no random page-token key: {e}")))?;
        // Another replica migrating at the same moment may have stored its
        // key first: keep that one, so that all agree.
        let insert = Query::insert()
            .into_table(PageTokenKey::Table)
            .columns([PageTokenKey::Id, PageTokenKey::Secret])
            .values([ONLY_ROW.into(), key.to_vec().into()])
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .on_conflict(OnConflict::column(PageTokenKey::Id).do_nothing().to_owned())
            .to_owned();
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PageTokenKey::Table).to_owned())
            .await
    }
}
