//! ListTokens' filters against the in-memory repository, one test per row:
//! five tokens of known owners, names, expiries, states and last uses, and
//! for each filter the names it must list (oldest first), all pages read.

use super::*;
use crate::domain::repository::TokenRepository;

/// The names the store holds, in creation order:
/// - `grafana-prod`: scrape, by root, expires at start + 1 h, never used;
/// - `grafana_dev`: scrape, by root, never expires, used at start − 2 days;
/// - `Grafana-x`: personal, by alice, expires at start + 10 min (expired
///   when listed), used at start − 1 h;
/// - `deploy`: service account, by root, revoked, used at start − 3 days;
/// - `graf%`: workspace key, by root, expires at start + 2 days, never used.
///
/// Listing happens at start + 30 min.
async fn listed(change: impl FnOnce(&mut ListTokensInput)) -> Result<Vec<String>, Vec<String>> {
    let fx = Fixture::new();
    let root = admin(ACME);
    let alice = user(ACME, "alice");
    let at = |delta: TimeDelta| Some(TimestampInput::Valid(start_time() + delta));
    let make = |who: &Caller, kind: TokenKind, name: &str, expires: Option<TimestampInput>| {
        let mut input = create_input(kind, name);
        input.expire_time = expires;
        let fx = &fx;
        let who = who.clone();
        async move {
            match fx.create(&who, input).await {
                Ok((token, _)) => token,
                Err(error) => panic!("set-up: {error:?}"),
            }
        }
    };
    let used = |token: &Token, delta: TimeDelta| {
        let (id, when) = (token.id, start_time() + delta);
        let repository = fx.repository.clone();
        async move {
            if let Err(error) = repository.touch_last_used(id, when, when).await {
                panic!("set-up: {error:?}");
            }
        }
    };
    make(
        &root,
        TokenKind::Scrape,
        "grafana-prod",
        at(TimeDelta::hours(1)),
    )
    .await;
    let dev = make(&root, TokenKind::Scrape, "grafana_dev", None).await;
    used(&dev, TimeDelta::days(-2)).await;
    let x = make(
        &alice,
        TokenKind::PersonalAccess,
        "Grafana-x",
        at(TimeDelta::minutes(10)),
    )
    .await;
    used(&x, TimeDelta::hours(-1)).await;
    let deploy = make(&root, TokenKind::ServiceAccount, "deploy", None).await;
    used(&deploy, TimeDelta::days(-3)).await;
    if let Err(error) = fx.revoke(&root, revoke_input(&deploy, "")).await {
        panic!("set-up: {error:?}");
    }
    make(
        &root,
        TokenKind::WorkspaceApiKey,
        "graf%",
        at(TimeDelta::days(2)),
    )
    .await;
    fx.clock.advance(TimeDelta::minutes(30));

    let mut input = ListTokensInput {
        show_revoked: false,
        page_size: 1,
        ..list_all()
    };
    change(&mut input);
    let mut names = Vec::new();
    loop {
        let page = match fx.core.list_tokens(&root, fx.now(), input.clone()).await {
            Ok(page) => page,
            Err(error) => return Err(violations(Err::<(), _>(error)).unwrap_or_default()),
        };
        names.extend(page.items.into_iter().map(|t| t.name));
        match page.next_page_token {
            Some(next) => input.page_token = next,
            None => return Ok(names),
        }
    }
}

fn at(delta: TimeDelta) -> Option<TimestampInput> {
    Some(TimestampInput::Valid(start_time() + delta))
}

fn state(state: StateFilter) -> StateInput {
    StateInput::Known(state)
}

macro_rules! rows {
    ($($name:ident: $change:expr => [$($listed:literal),*];)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let expected: Vec<String> = vec![$($listed.to_owned()),*];
                assert_eq!(listed($change).await, Ok(expected));
            }
        )*
    };
}

const ALL: [&str; 5] = [
    "grafana-prod",
    "grafana_dev",
    "Grafana-x",
    "deploy",
    "graf%",
];

rows! {
    // state: unspecified = active and expired; show_revoked = any.
    state_unspecified_is_active_and_expired: |_| () => ["grafana-prod", "grafana_dev", "Grafana-x", "graf%"];
    show_revoked_is_any: |i| i.show_revoked = true => ["grafana-prod", "grafana_dev", "Grafana-x", "deploy", "graf%"];
    state_any: |i| i.state = state(StateFilter::Any) => ["grafana-prod", "grafana_dev", "Grafana-x", "deploy", "graf%"];
    state_active: |i| i.state = state(StateFilter::Active) => ["grafana-prod", "grafana_dev", "graf%"];
    state_expired: |i| i.state = state(StateFilter::Expired) => ["Grafana-x"];
    state_revoked: |i| i.state = state(StateFilter::Revoked) => ["deploy"];

    // owner_user_id: exact.
    owner: |i| i.owner_user_id = "alice".into() => ["Grafana-x"];
    owner_and_state: |i| { i.owner_user_id = "root".into(); i.state = state(StateFilter::Any); } => ["grafana-prod", "grafana_dev", "deploy", "graf%"];
    owner_unknown: |i| i.owner_user_id = "ali".into() => [];

    // name_prefix: exact and case-sensitive; % and _ are ordinary.
    name_prefix: |i| i.name_prefix = "graf".into() => ["grafana-prod", "grafana_dev", "graf%"];
    name_prefix_is_case_sensitive: |i| i.name_prefix = "Graf".into() => ["Grafana-x"];
    name_prefix_percent_is_literal: |i| i.name_prefix = "graf%".into() => ["graf%"];
    name_prefix_underscore_is_literal: |i| i.name_prefix = "grafana_".into() => ["grafana_dev"];
    name_prefix_whole_name: |i| i.name_prefix = "grafana-prod".into() => ["grafana-prod"];
    name_prefix_longer_than_the_name: |i| i.name_prefix = "grafana-prod2".into() => [];

    // expire_before: strictly before; never-expiring tokens do not match.
    expire_before_is_strict: |i| i.expire_before = at(TimeDelta::hours(1)) => ["Grafana-x"];
    expire_before_just_after: |i| i.expire_before = at(TimeDelta::hours(1) + TimeDelta::seconds(1)) => ["grafana-prod", "Grafana-x"];
    expire_before_far: |i| { i.expire_before = at(TimeDelta::days(3)); i.show_revoked = true; } => ["grafana-prod", "Grafana-x", "graf%"];

    // last_used_before: strictly before; never used counts as before any time.
    last_used_before: |i| i.last_used_before = at(TimeDelta::days(-1)) => ["grafana-prod", "grafana_dev", "graf%"];
    last_used_before_with_revoked: |i| { i.last_used_before = at(TimeDelta::days(-1)); i.show_revoked = true; } => ["grafana-prod", "grafana_dev", "deploy", "graf%"];
    last_used_before_is_strict: |i| i.last_used_before = at(TimeDelta::hours(-1)) => ["grafana-prod", "grafana_dev", "graf%"];
    last_used_before_just_after: |i| i.last_used_before = at(TimeDelta::hours(-1) + TimeDelta::seconds(1)) => ["grafana-prod", "grafana_dev", "Grafana-x", "graf%"];
    last_used_before_epoch_plus_one_lists_never_used: |i| i.last_used_before = Some(TimestampInput::Valid(DateTime::UNIX_EPOCH + TimeDelta::seconds(1))) => ["grafana-prod", "graf%"];

    // Every filter at once.
    all_filters: |i| {
        i.state = state(StateFilter::Active);
        i.owner_user_id = "root".into();
        i.name_prefix = "graf".into();
        i.expire_before = at(TimeDelta::days(3));
        i.last_used_before = at(TimeDelta::zero());
    } => ["grafana-prod", "graf%"];
}

#[tokio::test]
async fn the_reference_names_every_token() {
    let every = listed(|i| i.state = state(StateFilter::Any)).await;
    assert_eq!(every, Ok(ALL.iter().map(|s| (*s).to_owned()).collect()));
}

/// A page token is bound to every new filter: reused with one changed, it
/// is refused.
#[tokio::test]
async fn page_tokens_are_bound_to_the_new_filters() {
    let fx = Fixture::new();
    let who = admin(ACME);
    for name in ["graf-1", "graf-2", "graf-3"] {
        fx.made(&who, TokenKind::Scrape, name).await;
    }
    let base = || ListTokensInput {
        page_size: 1,
        show_revoked: false,
        state: state(StateFilter::Active),
        owner_user_id: "root".into(),
        name_prefix: "graf".into(),
        expire_before: None,
        last_used_before: at(TimeDelta::days(1)),
        ..list_all()
    };
    let first = match fx.core.list_tokens(&who, fx.now(), base()).await {
        Ok(page) => page,
        Err(error) => panic!("{error:?}"),
    };
    let Some(next) = first.next_page_token else {
        panic!("a second page");
    };
    let again = |change: fn(&mut ListTokensInput)| {
        let mut input = base();
        input.page_token = next.clone();
        change(&mut input);
        input
    };
    let changes: [fn(&mut ListTokensInput); 5] = [
        |i| i.state = state(StateFilter::Any),
        |i| i.owner_user_id = "roo".into(),
        |i| i.name_prefix = "gra".into(),
        |i| i.expire_before = at(TimeDelta::days(9)),
        |i| i.last_used_before = at(TimeDelta::days(2)),
    ];
    assert!(
        fx.core
            .list_tokens(&who, fx.now(), again(|_| ()))
            .await
            .is_ok()
    );
    for change in changes {
        let refused = fx.core.list_tokens(&who, fx.now(), again(change)).await;
        assert_eq!(violations(refused), Ok(vec!["page_token".to_owned()]));
    }
}
