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
        "token_url": "", "client_id_env": "ID", "client_secret_env": "SECRET",
        "scopes": ["orders", "shipping"], "expiry_margin": "0s",
    }})
}

fn oauth_at(addr: SocketAddr) -> Value {
    let mut auth = oauth();
    auth["oauth2"]["token_url"] = json!(format!("http://{addr}/oauth/token"));
    auth
}

const OAUTH_ENV: &[(&str, &str)] = &[("ID", "id-1"), ("SECRET", "secret-xyz")];

#[tokio::test]
async fn api_key_goes_raw_in_its_header_and_basic_is_encoded() {
    let server = Arc::new(Server::default());
    let addr = serve(Arc::clone(&server)).await;
    let key = system(
        addr,
        json!({"api_key": {"header": "X-Api-Key", "env": "KEY"}}),
        &[("KEY", "k-123")],
    )
    .expect("system");
    assert_eq!(call(&key).await, Ok(200));
    let basic = system(
        addr,
        json!({"basic": {"username_env": "U", "password_env": "P"}}),
        &[("U", "id-1"), ("P", "secret-xyz")],
    )
    .expect("system");
    assert_eq!(call(&basic).await, Ok(200));
    let bearer = system(addr, json!({"bearer": {"env": "T"}}), &[("T", "tok")]).expect("system");
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
async fn an_unset_or_empty_secret_fails_setup_naming_the_variable() {
    let server = Arc::new(Server::default());
    let addr = serve(Arc::clone(&server)).await;
    for (auth, env, var) in [
        (json!({"bearer_env": "TOKEN"}), vec![], "TOKEN"),
        (
            json!({"bearer": {"env": "TOKEN"}}),
            vec![("TOKEN", "")],
            "TOKEN",
        ),
        (
            json!({"api_key": {"header": "X-Api-Key", "env": "KEY"}}),
            vec![],
            "KEY",
        ),
        (
            json!({"basic": {"username_env": "U", "password_env": "P"}}),
            vec![("U", "u")],
            "P",
        ),
        (oauth_at(addr), vec![("ID", "id-1")], "SECRET"),
    ] {
        let err = system(addr, auth, &env).expect_err("unset secret");
        assert!(
            err.contains(&format!("environment variable {var}")),
            "{err}"
        );
        assert!(err.contains("is not set"), "{err}");
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
    auth["oauth2"]["refresh_token_env"] = json!("REFRESH");
    auth["oauth2"]["scopes"] = json!([]);
    let mut env = OAUTH_ENV.to_vec();
    env.push(("REFRESH", "r0"));
    let system = system(addr, auth, &env).expect("system");
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
