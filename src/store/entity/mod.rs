//! sea-orm entities: the tables as the store reads and writes them.

pub mod audit_event;
pub mod page_token_key;
pub mod token;
pub mod token_policy;
