//! HTTP systems' `auth:` against a local server: an API key in a named header, bearer, basic,
//! OAuth2 tokens cached, renewed on expiry and on a 401 (once, shared by concurrent
//! requests), a refusing token endpoint, and unset secrets refused before any request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchyard::connectors::http::{HttpSystem, HttpSystemConfig};

/// What the test server saw and how it behaves.
#[derive(Default)]
struct Server {
    /// Tokens issued so far (token `t1`, `t2`, ...).
    issued: AtomicU32,
    /// The only token the API accepts right now (`t{n}`); 0 accepts the latest issued.
    revoked_below: AtomicU32,
    /// Token endpoint answers 401 when set.
    refuse: std::sync::atomic::AtomicBool,
    /// `expires_in` of issued tokens.
    lifetime: AtomicU32,
    /// The last form body and Authorization header the token endpoint got.
    last_form: std::sync::Mutex<String>,
    /// Authorization / X-Api-Key headers the API got, in order.
    seen: std::sync::Mutex<Vec<(String, String)>>,
    /// API calls refused with 401.
    rejected: AtomicU32,
}

async fn token(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    *server.last_form.lock().expect("lock") = body;
    let client = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // base64("id-1:secret-xyz")
    if server.refuse.load(Ordering::SeqCst) || client != "Basic aWQtMTpzZWNyZXQteHl6" {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "bad secret-xyz"})),
        );
    }
    let n = server.issued.fetch_add(1, Ordering::SeqCst) + 1;
    (
        StatusCode::OK,
        axum::Json(json!({
            "access_token": format!("t{n}"),
            "token_type": "Bearer",
            "expires_in": server.lifetime.load(Ordering::SeqCst),
            "refresh_token": format!("r{n}"),
        })),
    )
}

async fn api(State(server): State<Arc<Server>>, headers: HeaderMap) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    server
        .seen
        .lock()
        .expect("lock")
        .push((header("authorization"), header("x-api-key")));
    let auth = header("authorization");
    if let Some(n) = auth
        .strip_prefix("Bearer t")
        .and_then(|n| n.parse::<u32>().ok())
        && n <= server.revoked_below.load(Ordering::SeqCst)
    {
        server.rejected.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    StatusCode::OK
}

async fn serve(server: Arc<Server>) -> SocketAddr {
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/api", get(api))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn system(addr: SocketAddr, auth: Value, env: &[(&str, &str)]) -> Result<HttpSystem, String> {
    let config: HttpSystemConfig = serde_json::from_value(json!({
        "base_url": format!("http://{addr}"),
        "auth": auth,
    }))
    .map_err(|err| err.to_string())?;
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    HttpSystem::new(&config, Duration::from_secs(5), move |name| {
        env.get(name).cloned()
    })
    .map_err(|err| err.to_string())
}

async fn call(system: &HttpSystem) -> Result<u16, String> {
    let url = format!("{}/api", system.base_url);
    system
        .send(system.request(reqwest::Method::GET, &url))
        .await
        .map(|r| r.status().as_u16())
        .map_err(|err| err.to_string())
}

fn oauth() -> Value {
    json!({"oauth2": {
        "token_url": "", "client_id": "id-1", "client_secret": "secret-xyz",
        "scopes": ["orders", "shipping"], "expiry_margin": "0s",
    }})
}

fn oauth_at(addr: SocketAddr) -> Value {
    let mut auth = oauth();
    auth["oauth2"]["token_url"] = json!(format!("http://{addr}/oauth/token"));
    auth
}

const OAUTH_ENV: &[(&str, &str)] = &[];

#[tokio::test]
async fn api_key_goes_raw_in_its_header_and_basic_is_encoded() {
    let server = Arc::new(Server::default());
    let addr = serve(Arc::clone(&server)).await;
    let key = system(
        addr,
        json!({"api_key": {"header": "X-Api-Key", "key": "k-123"}}),
        &[],
    )
    .expect("system");
    assert_eq!(call(&key).await, Ok(200));
    let basic = system(
        addr,
        json!({"basic": {"username": "id-1", "password": "secret-xyz"}}),
        &[],
    )
    .expect("system");
    assert_eq!(call(&basic).await, Ok(200));
    let bearer = system(addr, json!({"bearer": {"token": "tok"}}), &[]).expect("system");
    assert_eq!(call(&bearer).await, Ok(200));
    let seen = server.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            (String::new(), "k-123".to_owned()),
            ("Basic aWQtMTpzZWNyZXQteHl6".to_owned(), String::new()),
            ("Bearer tok".to_owned(), String::new()),
        ]
    );
}

#[tokio::test]
async fn an_unset_or_empty_secret_fails_setup_before_any_request() {
    let server = Arc::new(Server::default());
    let addr = serve(Arc::clone(&server)).await;
    // `bearer_env` (the older spelling) names the variable itself.
    let err = system(addr, json!({"bearer_env": "TOKEN"}), &[]).expect_err("unset");
    assert!(err.contains("environment variable TOKEN"), "{err}");
    let err = system(addr, json!({"bearer_env": "TOKEN"}), &[("TOKEN", "")]).expect_err("empty");
    assert!(err.contains("environment variable TOKEN"), "{err}");
    // The `${NAME}` settings arrive expanded: an unset variable left them empty (validation
    // names the variable at its line; see the unset-auth-secret fixture).
    let mut oauth = oauth_at(addr);
    oauth["oauth2"]["client_secret"] = json!("");
    for (auth, setting) in [
        (json!({"bearer": {"token": ""}}), "bearer.token"),
        (
            json!({"api_key": {"header": "X-Api-Key", "key": ""}}),
            "api_key.key",
        ),
        (
            json!({"basic": {"username": "u", "password": ""}}),
            "basic.password",
        ),
        (oauth, "oauth2.client_secret"),
    ] {
        let err = system(addr, auth, &[]).expect_err("empty secret");
        assert!(err.contains(&format!("`auth` {setting} is empty")), "{err}");
    }
    assert!(
        server.seen.lock().expect("lock").is_empty(),
        "no request sent"
    );
}

#[tokio::test]
async fn oauth2_token_is_cached_until_expiry_then_renewed() {
    let server = Arc::new(Server::default());
    server.lifetime.store(3600, Ordering::SeqCst);
    let addr = serve(Arc::clone(&server)).await;
    let system = system(addr, oauth_at(addr), OAUTH_ENV).expect("system");
    for _ in 0..3 {
        assert_eq!(call(&system).await, Ok(200));
    }
    assert_eq!(
        server.issued.load(Ordering::SeqCst),
        1,
        "one token for three calls"
    );
    let form = server.last_form.lock().expect("lock").clone();
    assert_eq!(form, "grant_type=client_credentials&scope=orders+shipping");

    // A token that expires at once (margin 0) is renewed before the next call.
    let server = Arc::new(Server::default());
    server.lifetime.store(0, Ordering::SeqCst);
    let addr = serve(Arc::clone(&server)).await;
    let system = self::system(addr, oauth_at(addr), OAUTH_ENV).expect("system");
    for _ in 0..2 {
        assert_eq!(call(&system).await, Ok(200));
    }
    assert_eq!(server.issued.load(Ordering::SeqCst), 2);
    assert_eq!(server.rejected.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_401_renews_the_token_once_shared_by_concurrent_requests() {
    let server = Arc::new(Server::default());
    server.lifetime.store(3600, Ordering::SeqCst);
    let addr = serve(Arc::clone(&server)).await;
    let system = system(addr, oauth_at(addr), OAUTH_ENV).expect("system");
    assert_eq!(call(&system).await, Ok(200));
    // The API revokes t1 early (as real ones do on rotation): every call in flight gets a 401.
    server.revoked_below.store(1, Ordering::SeqCst);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let system = system.clone();
            tokio::spawn(async move { call(&system).await })
        })
        .collect();
    for handle in calls {
        assert_eq!(handle.await.expect("join"), Ok(200));
    }
    assert_eq!(
        server.issued.load(Ordering::SeqCst),
        2,
        "one renewal for all refused calls"
    );
    // A token that is refused again is not renewed in a loop: the 401 comes back.
    server.revoked_below.store(u32::MAX, Ordering::SeqCst);
    assert_eq!(call(&system).await, Ok(401));
    assert_eq!(
        server.issued.load(Ordering::SeqCst),
        3,
        "renewed once, sent again once"
    );
}

#[tokio::test]
async fn a_refusing_token_endpoint_is_a_spec_error_naming_it_without_the_secret() {
    let server = Arc::new(Server::default());
    server.refuse.store(true, Ordering::SeqCst);
    let addr = serve(Arc::clone(&server)).await;
    let system = system(addr, oauth_at(addr), OAUTH_ENV).expect("system");
    let url = format!("{}/api", system.base_url);
    let err = system
        .send(system.request(reqwest::Method::GET, &url))
        .await
        .expect_err("refused");
    let connector = err.into_connector_error("GET /api");
    let text = connector.to_string();
    assert!(
        text.contains(&format!("http://{addr}/oauth/token")) && text.contains("HTTP 401"),
        "{text}"
    );
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("secret-xyz"), "{text}");
    assert_eq!(
        connector.fault,
        switchyard::connectors::Fault::Spec,
        "{connector:?}"
    );
    assert!(
        server.seen.lock().expect("lock").is_empty(),
        "the API was not called"
    );
}

#[tokio::test]
async fn refresh_token_grant_sends_and_rotates_the_refresh_token() {
    let server = Arc::new(Server::default());
    server.lifetime.store(0, Ordering::SeqCst);
    let addr = serve(Arc::clone(&server)).await;
    let mut auth = oauth_at(addr);
    auth["oauth2"]["grant"] = json!("refresh_token");
    auth["oauth2"]["refresh_token"] = json!("r0");
    auth["oauth2"]["scopes"] = json!([]);
    let system = system(addr, auth, OAUTH_ENV).expect("system");
    assert_eq!(call(&system).await, Ok(200));
    assert_eq!(
        *server.last_form.lock().expect("lock"),
        "grant_type=refresh_token&refresh_token=r0"
    );
    assert_eq!(call(&system).await, Ok(200));
    assert_eq!(
        *server.last_form.lock().expect("lock"),
        "grant_type=refresh_token&refresh_token=r1",
        "the rotated refresh token is used"
    );
}

/// The sandbox with its OAuth2 token endpoint on, tokens living `lifetime`.
async fn oauth_sandbox(offers: usize, lifetime: Duration) -> switchyard::sandbox::Sandbox {
    switchyard::sandbox::Sandbox::start(switchyard::sandbox::SandboxConfig {
        offers,
        oauth: Some(switchyard::sandbox::OAuthConfig {
            token_lifetime: lifetime,
            required: true,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("sandbox")
}

#[tokio::test]
async fn sandbox_token_endpoint_issues_rotates_and_guards_the_marketplace_api() {
    let sandbox = oauth_sandbox(5, Duration::from_secs(60)).await;
    let client = reqwest::Client::new();
    let offers = format!("{}/api/offers", sandbox.marketplace_url());
    let token_url = format!("{}/oauth/token", sandbox.marketplace_url());
    let status = client.get(&offers).send().await.expect("get").status();
    assert_eq!(status, 401, "no token");
    let bad = client
        .post(&token_url)
        .basic_auth("sandbox-client", Some("wrong"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 401);
    let issue = |body: &'static str| {
        client
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "{body}&client_id=sandbox-client&client_secret=sandbox-client-secret"
            ))
            .send()
    };
    let token: Value = issue("grant_type=client_credentials")
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let access = token["access_token"].as_str().expect("token").to_owned();
    let refresh = token["refresh_token"].as_str().expect("refresh").to_owned();
    assert_eq!(token["expires_in"], 60);
    let status = client
        .get(&offers)
        .bearer_auth(&access)
        .send()
        .await
        .expect("get")
        .status();
    assert_eq!(status, 200);
    let form = format!(
        "grant_type=refresh_token&refresh_token={refresh}&client_id=sandbox-client&client_secret=sandbox-client-secret"
    );
    let post = |form: String| {
        client
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    assert_eq!(post(form.clone()).await.expect("post").status(), 200);
    assert_eq!(
        post(form).await.expect("post").status(),
        400,
        "a refresh token is single-use"
    );
    let stats = sandbox.oauth_stats();
    assert_eq!((stats.issued, stats.refreshed, stats.rejected), (1, 1, 1));
    assert_eq!(stats.refused, 2);
    let summary: Value = client
        .get(format!("{}/_sandbox/marketplace/oauth", sandbox.base_url()))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(summary["rejected"], 1);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_run_is_renewed_without_a_failed_record() {
    use crate::runtime::{load, run_flow, workspace_copy};
    let sandbox = oauth_sandbox(300, Duration::from_secs(1)).await;
    // Each page takes 600 ms: the first token expires while the listing goes on.
    sandbox.inject_marketplace_fault(switchyard::sandbox::Fault::latency(600));
    let (root, _state) = workspace_copy("oauth-expiry", true);
    // The reference workspace authenticates with OAuth2 client credentials.
    let workspace = load(&root, &sandbox);
    let store = switchyard::store::Store::open_target(&workspace.state)
        .await
        .expect("store");
    let report = run_flow(&workspace, &store).await;
    let summary = sandbox.summary();
    assert_eq!(report.delivered as usize, summary.valid, "{report:?}");
    assert_eq!(sandbox.storefront_stats().records, summary.valid);
    let letters = store
        .dead_letters(&switchyard::store::DeadLetterFilter {
            failure: Some("source-unavailable".into()),
            ..Default::default()
        })
        .await
        .expect("letters");
    assert!(letters.is_empty(), "{letters:?}");
    let stats = sandbox.oauth_stats();
    assert!(
        stats.issued >= 2,
        "the token was renewed mid-run: {stats:?}"
    );
    assert_eq!(stats.rejected, 0, "no call went out with an expired token");
    sandbox.shutdown().await;
}
