//! Caller JWTs: minted with the secret every test server trusts, or with
//! the zero-config secret a binary made in its data folder.

use chrono::Utc;

use tokend::identity::{HsSecret, MintRequest, mint_hs256};

/// The HS256 secret every test server trusts.
pub const HS_SECRET: &str = "test-secret-0123456789abcdef0123456789";

pub fn mint(
    org: &str,
    sub: &str,
    roles: &[&str],
    permissions: &[&str],
    iat: i64,
    exp: i64,
) -> String {
    mint_hs256(
        &HsSecret::new(HS_SECRET).expect("a long enough test secret"),
        &MintRequest {
            sub: sub.into(),
            org_id: org.into(),
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
            permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
            iat,
            exp,
            iss: None,
            aud: None,
        },
    )
    .expect("mint")
}

/// A JWT signed with the zero-config secret a binary made in `dir`.
pub fn mint_from_data_dir(
    dir: &std::path::Path,
    org: &str,
    sub: &str,
    roles: &[&str],
    permissions: &[&str],
) -> String {
    let secret = std::fs::read_to_string(dir.join("jwt-hs256.secret")).expect("secret file");
    let now = Utc::now().timestamp();
    mint_hs256(
        &HsSecret::new(secret.trim()).expect("a long enough secret file"),
        &MintRequest {
            sub: sub.into(),
            org_id: org.into(),
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
            permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
            iat: now,
            exp: now + 600,
            iss: None,
            aud: None,
        },
    )
    .expect("mint")
}
