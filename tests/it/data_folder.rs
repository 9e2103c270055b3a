//! The data folder on the real binary: the zero-config JWT secret when many
//! `serve` and `mint-jwt` processes make it at once, short secrets from any
//! source, and the modes of the folder and of every file tokend makes in it.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tokio::process::{Child, Command};
use tonic::Code;
use tonic::transport::Channel;

use tokend::grpc::proto::ListTokensRequest;
use tokend::grpc::proto::token_service_client::TokenServiceClient;

use crate::support::{
    TestResult, authed, expect_error, listening_addrs, mint_from_data_dir, ready_channel,
    scrape_request, serve_command, tokend_command,
};

const SECRET_FILE: &str = "jwt-hs256.secret";

/// `serve` with JSON logs at `info` on stderr, for [`listening_addrs`].
fn serve(dir: &Path) -> Command {
    let mut command = serve_command(dir);
    command
        .args(["--health-check-interval", "100ms"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn mint_jwt(dir: &Path, sub: &str) -> Command {
    let mut command = tokend_command(
        &["mint-jwt", "--org", "acme", "--sub", sub, "--role", "admin"],
        dir,
    );
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// The gRPC address a `serve` child logs once it listens, or its whole
/// log if it exits first.
async fn listening_addr(child: &mut Child) -> Result<SocketAddr, String> {
    listening_addrs(child)
        .await
        .map(|(grpc_addr, _, _)| grpc_addr)
        .map_err(|log| log.join("\n"))
}

/// An HS256 JWT with `claims`, signed with `key` (which may be empty: what
/// an attacker would forge if tokend ever used an empty key).
fn hs256(key: &[u8], claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Whether `jwt`'s HS256 signature was made with `key`.
fn signed_with(jwt: &str, key: &[u8]) -> bool {
    let Some((input, signature)) = jwt.trim().rsplit_once('.') else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::verify(&key, input.as_bytes(), &signature).is_ok()
}

fn admin_claims() -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": "mallory", "org_id": "acme", "roles": ["admin"], "iat": now, "exp": now + 600})
}

async fn list(channel: &Channel, jwt: &str) -> Result<(), tonic::Status> {
    TokenServiceClient::new(channel.clone())
        .list_tokens(authed(ListTokensRequest::default(), jwt))
        .await
        .map(|_| ())
}

/// Replicas on one volume, and an operator minting JWTs while they start:
/// every process of a round starts on a fresh folder at once. One secret
/// ends up on disk, every minted JWT is signed with it and none with an
/// empty key, and no server accepts a JWT signed with an empty key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_first_starts_share_one_secret_and_never_use_an_empty_key() -> TestResult {
    const ROUNDS: usize = 8;
    const MINTERS: usize = 24;
    const SERVERS: usize = 3;
    for round in 0..ROUNDS {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("data");
        // Spawned back to back, servers among minters: all of them look for
        // the secret within the same few milliseconds.
        let mut servers = Vec::new();
        let mut minters = Vec::new();
        for i in 0..MINTERS {
            if i % (MINTERS / SERVERS) == 0 && servers.len() < SERVERS {
                servers.push(serve(&dir).spawn()?);
            }
            minters.push(mint_jwt(&dir, &format!("minter-{i}")).spawn()?);
        }
        let mut jwts = Vec::new();
        for minter in minters {
            let output = minter.wait_with_output().await?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "round {round}: mint-jwt failed: {stderr}"
            );
            jwts.push(String::from_utf8(output.stdout)?.trim().to_owned());
        }
        let mut addrs = Vec::new();
        for server in &mut servers {
            addrs.push(
                listening_addr(server)
                    .await
                    .map_err(|log| format!("round {round}: serve did not start: {log}"))?,
            );
        }

        let on_disk = std::fs::read(dir.join(SECRET_FILE))?;
        assert_eq!(on_disk.len(), 43, "round {round}: 256 bits, base64url");
        for jwt in &jwts {
            assert!(
                signed_with(jwt, &on_disk),
                "round {round}: a minted JWT is not signed with the secret on disk"
            );
            assert!(
                !signed_with(jwt, b""),
                "round {round}: a JWT was minted with an empty key"
            );
        }
        let forged = hs256(b"", &admin_claims());
        for addr in addrs {
            let channel = ready_channel(addr).await;
            let details = expect_error(
                list(&channel, &forged).await,
                Code::Unauthenticated,
                "JWT_INVALID",
            );
            assert_eq!(details.problem.status, 401);
            list(&channel, &jwts[0]).await?;
        }
        // Nothing but tokend's own files: no temporary file is left over.
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            assert!(
                [SECRET_FILE, "tokend.db", "tokend.db-wal", "tokend.db-shm"]
                    .contains(&name.as_str()),
                "round {round}: unexpected file {name}"
            );
        }
        for mut server in servers {
            server.start_kill()?;
            server.wait().await?;
        }
    }
    Ok(())
}

/// The one line a failed start-up printed, checked to name `setting` and to
/// come with no JWT on stdout and no panic.
fn refused(output: &std::process::Output, setting: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted; stdout {stdout:?}");
    assert!(stdout.trim().is_empty(), "printed {stdout:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.starts_with("tokend:"))
        .unwrap_or_else(|| panic!("no start-up error line in {stderr:?}"))
        .to_owned();
    assert!(line.contains(setting), "{line:?} does not name {setting}");
    line
}

/// A short key from any source (the flag, or a secret file an operator or an
/// older tokend left) stops `serve` and `mint-jwt` with one line naming the
/// setting; none of them signs or verifies with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_hs_secret_from_any_source_stops_start_up() -> TestResult {
    let root = tempfile::tempdir()?;
    let dir = root.path().join("data");
    for short in ["", "short", "0123456789abcdef0123456789abcde"] {
        let output = mint_jwt(&dir, "alice")
            .args(["--jwt-hs256-secret", short])
            .output()
            .await?;
        refused(&output, "--jwt-hs256-secret (TOKEND_JWT_HS256_SECRET)");
        let output = serve(&dir)
            .args(["--jwt-hs256-secret", short])
            .output()
            .await?;
        refused(&output, "--jwt-hs256-secret (TOKEND_JWT_HS256_SECRET)");
    }
    std::fs::create_dir_all(&dir)?;
    for short in ["", "\n", "  short  \n", "0123456789abcdef0123456789abcde\n"] {
        std::fs::write(dir.join(SECRET_FILE), short)?;
        let output = mint_jwt(&dir, "alice").output().await?;
        let line = refused(&output, "--data-dir (TOKEND_DATA_DIR)");
        assert!(line.contains(SECRET_FILE), "{line}");
        let output = serve(&dir).output().await?;
        let line = refused(&output, "--data-dir (TOKEND_DATA_DIR)");
        assert!(line.contains(SECRET_FILE), "{line}");
    }
    Ok(())
}

fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::symlink_metadata(path)?.permissions().mode() & 0o777)
}

/// Asserts `dir` is 0700 and every entry in it a regular file of mode 0600;
/// returns the names.
fn assert_private(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    assert_eq!(mode(dir)?, 0o700, "{}", dir.display());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(entry.file_type()?.is_file(), "{name} is not a file");
        assert_eq!(mode(&entry.path())?, 0o600, "mode of {name}");
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// Token hashes, audit events and the JWT secret are readable by tokend's
/// user only: the folder is made 0700 and every file in it 0600 (the
/// database, its WAL and shared-memory files, the secret), by `serve`,
/// `migrate` and `mint-jwt` alike, under a umask that would allow more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_and_every_file_in_it_are_private() -> TestResult {
    let root = tempfile::tempdir()?;

    // serve, after a write, while the database is open (WAL and SHM exist).
    let dir = root.path().join("serve");
    let mut server = serve(&dir).spawn()?;
    let addr = listening_addr(&mut server).await?;
    let channel = ready_channel(addr).await;
    let admin = mint_from_data_dir(&dir, "acme", "admin-user", &["admin"], &[]);
    TokenServiceClient::new(channel.clone())
        .create_token(authed(scrape_request("private"), &admin))
        .await?;
    let names = assert_private(&dir)?;
    for name in [SECRET_FILE, "tokend.db", "tokend.db-shm", "tokend.db-wal"] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    let pid = server.id().ok_or("serve exited")?.to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    assert!(server.wait().await?.success());
    assert_private(&dir)?;

    // migrate, in a folder two levels below one that exists.
    let dir = root.path().join("migrate/data");
    let output = tokend_command(&["migrate"], &dir).output().await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(mode(&root.path().join("migrate"))?, 0o700);
    let names = assert_private(&dir)?;
    assert!(names.iter().any(|n| n == "tokend.db"), "{names:?}");

    // mint-jwt.
    let dir = root.path().join("mint");
    let output = mint_jwt(&dir, "alice").output().await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(assert_private(&dir)?, [SECRET_FILE]);
    Ok(())
}
