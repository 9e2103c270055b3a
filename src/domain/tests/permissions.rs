//! The permission table of docs/reference.md ("Permissions"): every RPC as
//! every caller shape, in the caller's organisation and in another one. Each
//! cell is its own test (`permissions::<rpc>::<caller>`), so one broken cell
//! never hides another.

use super::*;

/// One line of the table: an RPC, and the tokens it acts on.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    CreateScrape,
    CreatePersonal,
    CreateServiceAccount,
    CreateWorkspace,
    /// GetToken of `alice`'s own personal access token.
    GetOwnPersonal,
    /// GetToken of `bob`'s personal access token.
    GetOthersToken,
    ListTokens,
    RevokeScrape,
    RevokeOwnPersonal,
    RevokeOthersPersonal,
    RevokeServiceAccount,
    DeleteWorkspace,
    Authenticate,
    ListAudit,
}

impl Rpc {
    /// The permission a refusal names: the one that would allow the call.
    fn permission_needed(self) -> &'static str {
        match self {
            Rpc::CreateScrape
            | Rpc::CreateServiceAccount
            | Rpc::CreateWorkspace
            | Rpc::RevokeScrape
            | Rpc::ListAudit => "admin",
            Rpc::CreatePersonal | Rpc::RevokeOwnPersonal | Rpc::RevokeOthersPersonal => {
                "user_app_keys"
            }
            Rpc::GetOwnPersonal | Rpc::GetOthersToken | Rpc::ListTokens => "org_app_keys_read",
            Rpc::RevokeServiceAccount => "service_account_tokens_write",
            Rpc::DeleteWorkspace => "workspace_api_keys_write",
            Rpc::Authenticate => "tokens_introspect",
        }
    }
}

/// What the table says a cell does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Allowed,
    PermissionDenied,
    NotFound,
}

const OK: Expected = Expected::Allowed;
const PD: Expected = Expected::PermissionDenied;
const NF: Expected = Expected::NotFound;

/// `alice` of `org_id` holding the role or permission `grant` ("" for none).
fn shape(org_id: &str, grant: &str) -> Caller {
    match grant {
        "admin" => caller(org_id, "alice", &["admin"], &[]),
        "" => caller(org_id, "alice", &[], &[]),
        permission => caller(org_id, "alice", &[], &[permission]),
    }
}

/// Runs `rpc` as `who` against tokens of `acme` made for it; the outcome
/// as the table names it. A refusal must name the right permission and
/// change nothing.
async fn attempt(rpc: Rpc, who: &Caller) -> Expected {
    let fx = Fixture::new();
    let acme_admin = admin(ACME);
    let alice = user(ACME, "alice");
    let bob = user(ACME, "bob");
    let target = match rpc {
        // Something of `acme` to list, which `evil` must not see.
        Rpc::GetOwnPersonal | Rpc::RevokeOwnPersonal | Rpc::ListTokens | Rpc::ListAudit => {
            Some(fx.made(&alice, TokenKind::PersonalAccess, "mine").await)
        }
        Rpc::GetOthersToken | Rpc::RevokeOthersPersonal => {
            Some(fx.made(&bob, TokenKind::PersonalAccess, "bobs").await)
        }
        Rpc::RevokeScrape | Rpc::Authenticate => {
            Some(fx.made(&acme_admin, TokenKind::Scrape, "scraper").await)
        }
        Rpc::RevokeServiceAccount => Some(
            fx.made(&acme_admin, TokenKind::ServiceAccount, "deploy")
                .await,
        ),
        Rpc::DeleteWorkspace => Some(
            fx.made(&acme_admin, TokenKind::WorkspaceApiKey, "key")
                .await,
        ),
        Rpc::CreateScrape
        | Rpc::CreatePersonal
        | Rpc::CreateServiceAccount
        | Rpc::CreateWorkspace => None,
    };
    let tokens_before = fx.repository.tokens();
    let events_before = fx.repository.audit_events();
    let create = |kind| fx.create(who, create_input(kind, "made"));
    let revoke = || match &target {
        Some((token, _)) => fx.revoke(who, revoke_input(token, "")),
        None => panic!("{rpc:?} has a target"),
    };
    let result: Result<(), ServiceError> = match rpc {
        Rpc::CreateScrape => create(TokenKind::Scrape).await.map(drop),
        Rpc::CreatePersonal => create(TokenKind::PersonalAccess).await.map(drop),
        Rpc::CreateServiceAccount => create(TokenKind::ServiceAccount).await.map(drop),
        Rpc::CreateWorkspace => create(TokenKind::WorkspaceApiKey).await.map(drop),
        Rpc::GetOwnPersonal | Rpc::GetOthersToken => match &target {
            Some((token, _)) => fx.core.get_token(who, token.id).await.map(drop),
            None => panic!("{rpc:?} has a target"),
        },
        Rpc::ListTokens => fx
            .core
            .list_tokens(who, fx.now(), list_all())
            .await
            .map(|page| {
                assert!(
                    page.items.iter().all(|t| t.org_id == who.org_id),
                    "a list shows only the caller's organisation"
                );
                assert_eq!(page.items.is_empty(), who.org_id != ACME);
            }),
        Rpc::RevokeScrape
        | Rpc::RevokeOwnPersonal
        | Rpc::RevokeOthersPersonal
        | Rpc::RevokeServiceAccount
        | Rpc::DeleteWorkspace => revoke().await.map(drop),
        Rpc::Authenticate => match &target {
            Some((_, secret)) => fx
                .core
                .authenticate_token(
                    who,
                    &fx.audit(who),
                    AuthenticateInput::secret(secret.expose()),
                )
                .await
                .map(drop),
            None => panic!("{rpc:?} has a target"),
        },
        Rpc::ListAudit => fx
            .core
            .list_audit_events(who, all_events())
            .await
            .map(|page| {
                assert!(page.items.iter().all(|e| e.org_id == who.org_id));
                assert_eq!(page.items.is_empty(), who.org_id != ACME);
            }),
    };
    let outcome = match result {
        Ok(()) => return OK,
        Err(ServiceError::PermissionDenied { permission }) => {
            assert_eq!(permission, rpc.permission_needed(), "the permission named");
            PD
        }
        Err(ServiceError::NotFound(_)) => NF,
        Err(other) => panic!("{rpc:?}: unexpected {other:?}"),
    };
    assert_eq!(
        fx.repository.tokens(),
        tokens_before,
        "a refusal changes no token"
    );
    assert_eq!(
        fx.repository.audit_events(),
        events_before,
        "a refusal writes no audit event"
    );
    outcome
}

/// One row: the expected outcome for each caller shape of `acme` (where the
/// tokens are), then for the same shapes in `evil`.
macro_rules! row {
    ($module:ident: $rpc:ident
        [$admin:ident, $user:ident, $read:ident, $write:ident, $sa:ident, $ws:ident,
         $introspect:ident, $none:ident]
        [$o_admin:ident, $o_user:ident, $o_read:ident, $o_write:ident, $o_sa:ident,
         $o_ws:ident, $o_introspect:ident, $o_none:ident]) => {
        mod $module {
            use super::*;

            async fn check(org_id: &str, grant: &str, expected: Expected) {
                let got = attempt(Rpc::$rpc, &shape(org_id, grant)).await;
                assert_eq!(got, expected, "{:?} as {grant:?} of {org_id}", Rpc::$rpc);
            }

            #[tokio::test]
            async fn admin() {
                check(ACME, "admin", $admin).await;
            }
            #[tokio::test]
            async fn user_app_keys() {
                check(ACME, "user_app_keys", $user).await;
            }
            #[tokio::test]
            async fn org_app_keys_read() {
                check(ACME, "org_app_keys_read", $read).await;
            }
            #[tokio::test]
            async fn org_app_keys_write() {
                check(ACME, "org_app_keys_write", $write).await;
            }
            #[tokio::test]
            async fn service_account_tokens_write() {
                check(ACME, "service_account_tokens_write", $sa).await;
            }
            #[tokio::test]
            async fn workspace_api_keys_write() {
                check(ACME, "workspace_api_keys_write", $ws).await;
            }
            #[tokio::test]
            async fn tokens_introspect() {
                check(ACME, "tokens_introspect", $introspect).await;
            }
            #[tokio::test]
            async fn no_permission() {
                check(ACME, "", $none).await;
            }
            #[tokio::test]
            async fn other_org_admin() {
                check(EVIL, "admin", $o_admin).await;
            }
            #[tokio::test]
            async fn other_org_user_app_keys() {
                check(EVIL, "user_app_keys", $o_user).await;
            }
            #[tokio::test]
            async fn other_org_org_app_keys_read() {
                check(EVIL, "org_app_keys_read", $o_read).await;
            }
            #[tokio::test]
            async fn other_org_org_app_keys_write() {
                check(EVIL, "org_app_keys_write", $o_write).await;
            }
            #[tokio::test]
            async fn other_org_service_account_tokens_write() {
                check(EVIL, "service_account_tokens_write", $o_sa).await;
            }
            #[tokio::test]
            async fn other_org_workspace_api_keys_write() {
                check(EVIL, "workspace_api_keys_write", $o_ws).await;
            }
            #[tokio::test]
            async fn other_org_tokens_introspect() {
                check(EVIL, "tokens_introspect", $o_introspect).await;
            }
            #[tokio::test]
            async fn other_org_no_permission() {
                check(EVIL, "", $o_none).await;
            }
        }
    };
}

// Columns: admin, user_app_keys, org_app_keys_read, org_app_keys_write,
// service_account_tokens_write, workspace_api_keys_write, tokens_introspect,
// no permission; first in `acme` (where the tokens are), then in `evil`.
// Creates and lists act in the caller's own organisation, so another
// organisation changes nothing for them; a token of `acme` is NOT_FOUND to
// `evil` whenever the permission would have allowed the call.
row!(create_scrape: CreateScrape
    [OK, PD, PD, PD, PD, PD, PD, PD] [OK, PD, PD, PD, PD, PD, PD, PD]);
row!(create_personal: CreatePersonal
    [OK, OK, PD, PD, PD, PD, PD, PD] [OK, OK, PD, PD, PD, PD, PD, PD]);
row!(create_service_account: CreateServiceAccount
    [OK, PD, PD, PD, PD, PD, PD, PD] [OK, PD, PD, PD, PD, PD, PD, PD]);
row!(create_workspace: CreateWorkspace
    [OK, PD, PD, PD, PD, PD, PD, PD] [OK, PD, PD, PD, PD, PD, PD, PD]);
row!(get_own_personal: GetOwnPersonal
    [OK, OK, OK, PD, PD, PD, PD, PD] [NF, NF, NF, PD, PD, PD, PD, PD]);
row!(get_others_token: GetOthersToken
    [OK, NF, OK, PD, PD, PD, PD, PD] [NF, NF, NF, PD, PD, PD, PD, PD]);
row!(list_tokens: ListTokens
    [OK, OK, OK, PD, PD, PD, PD, PD] [OK, OK, OK, PD, PD, PD, PD, PD]);
row!(revoke_scrape: RevokeScrape
    [OK, PD, PD, PD, PD, PD, PD, PD] [NF, PD, PD, PD, PD, PD, PD, PD]);
row!(revoke_own_personal: RevokeOwnPersonal
    [OK, OK, PD, OK, PD, PD, PD, PD] [NF, NF, PD, NF, PD, PD, PD, PD]);
row!(revoke_others_personal: RevokeOthersPersonal
    [OK, NF, PD, OK, PD, PD, PD, PD] [NF, NF, PD, NF, PD, PD, PD, PD]);
row!(revoke_service_account: RevokeServiceAccount
    [OK, PD, PD, PD, OK, PD, PD, PD] [NF, PD, PD, PD, NF, PD, PD, PD]);
row!(delete_workspace: DeleteWorkspace
    [OK, PD, PD, PD, PD, OK, PD, PD] [NF, PD, PD, PD, PD, NF, PD, PD]);
// tokens_introspect is a platform permission: admin does not imply it, and
// it finds a secret of any organisation.
row!(authenticate: Authenticate
    [PD, PD, PD, PD, PD, PD, OK, PD] [PD, PD, PD, PD, PD, PD, OK, PD]);
row!(list_audit: ListAudit
    [OK, PD, PD, PD, PD, PD, PD, PD] [OK, PD, PD, PD, PD, PD, PD, PD]);

/// `admin` is a role: named in `permissions` (or an OAuth `scope`) it
/// grants nothing.
#[tokio::test]
async fn admin_is_a_role_not_a_permission() {
    let as_permission = caller(ACME, "alice", &[], &["admin"]);
    assert_eq!(attempt(Rpc::CreateScrape, &as_permission).await, PD);
    assert_eq!(attempt(Rpc::ListAudit, &as_permission).await, PD);
}
