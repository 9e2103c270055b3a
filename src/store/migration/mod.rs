//! Schema migrations, applied at start-up and by `tokend migrate`.

use sea_orm_migration::prelude::*;

mod m20261126_000001_create_tokens;
mod m20261130_000001_create_page_token_key;
mod m20261130_000002_list_filter_indexes;
mod m20261130_000003_rotation_and_policy;
mod m20261130_000004_revoked_use;

/// Every migration, in order.
#[derive(Debug)]
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_tokens::Migration),
            Box::new(m20261130_000001_create_page_token_key::Migration),
            Box::new(m20261130_000002_list_filter_indexes::Migration),
            Box::new(m20261130_000003_rotation_and_policy::Migration),
            Box::new(m20261130_000004_revoked_use::Migration),
        ]
    }
}
