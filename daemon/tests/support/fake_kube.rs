//! A fake Kubernetes API server: answers list and watch for namespaces, pods, deployments and
//! statefulsets from in-memory JSON, streams watch events that tests push, and can forbid a
//! resource the way RBAC does. Enough for kube-rs clients and kube-runtime reflectors.

use std::{
    collections::{BTreeMap, HashSet},
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{Request, Response, body::Frame, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

#[derive(Default)]
struct State {
    namespaces: Vec<String>,
    /// (resource, namespace) -> objects by name.
    objects: BTreeMap<(String, String), BTreeMap<String, Value>>,
    forbidden: HashSet<String>,
    rollouts_crd: bool,
    watchers: Vec<(String, String, mpsc::UnboundedSender<Bytes>)>,
    version: u64,
    requests: Vec<String>,
}

/// A running fake API server and a kubeconfig pointing at it.
pub struct FakeKube {
    /// Where it listens.
    pub addr: SocketAddr,
    /// kubeconfig with contexts `fake` (namespace `shop`, current) and `other`.
    pub kubeconfig: PathBuf,
    state: Arc<Mutex<State>>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn api_path(resource: &str) -> &'static str {
    match resource {
        "pods" => "/api/v1",
        "rollouts" => "/apis/argoproj.io/v1alpha1",
        _ => "/apis/apps/v1",
    }
}

fn kind_of(resource: &str) -> (&'static str, &'static str) {
    match resource {
        "pods" => ("v1", "Pod"),
        "deployments" => ("apps/v1", "Deployment"),
        "rollouts" => ("argoproj.io/v1alpha1", "Rollout"),
        _ => ("apps/v1", "StatefulSet"),
    }
}

impl FakeKube {
    /// Starts the server with namespaces `default` and `shop`.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            namespaces: vec!["default".into(), "shop".into()],
            version: 1,
            ..Default::default()
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: dev\n    namespace: shop\n- name: other\n  context:\n    cluster: fake\n    user: dev\ncurrent-context: fake\nusers:\n- name: dev\n  user:\n    token: dev-token\n"
            ),
        )
        .unwrap();
        Self {
            addr,
            kubeconfig,
            state,
            _dir: dir,
            task,
        }
    }

    /// Adds or replaces an object (`resource` is `pods`, `deployments` or `statefulsets`) and
    /// tells the watchers.
    pub fn apply(&self, resource: &str, namespace: &str, mut object: Value) {
        let mut st = self.state.lock().unwrap();
        st.version += 1;
        let version = st.version.to_string();
        let (api_version, kind) = kind_of(resource);
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        object["metadata"]["namespace"] = json!(namespace);
        object["metadata"]["resourceVersion"] = json!(version);
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let existed = st
            .objects
            .entry((resource.to_owned(), namespace.to_owned()))
            .or_default()
            .insert(name, object.clone())
            .is_some();
        let event = json!({"type": if existed { "MODIFIED" } else { "ADDED" }, "object": object});
        let line = Bytes::from(format!("{event}\n"));
        st.watchers
            .retain(|(r, n, tx)| r != resource || n != namespace || tx.send(line.clone()).is_ok());
    }

    /// Deletes an object and tells the watchers.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        st.version += 1;
        let Some(mut object) = st
            .objects
            .get_mut(&(resource.to_owned(), namespace.to_owned()))
            .and_then(|m| m.remove(name))
        else {
            return;
        };
        object["metadata"]["resourceVersion"] = json!(st.version.to_string());
        let line = Bytes::from(format!(
            "{}\n",
            json!({"type": "DELETED", "object": object})
        ));
        st.watchers
            .retain(|(r, n, tx)| r != resource || n != namespace || tx.send(line.clone()).is_ok());
    }

    /// Installs the Argo Rollouts CRD: its API group version is discoverable and served.
    pub fn install_rollouts_crd(&self) {
        self.state.lock().unwrap().rollouts_crd = true;
    }

    /// Makes every request for `resource` answer 403, as RBAC would.
    pub fn forbid(&self, resource: &str) {
        self.state
            .lock()
            .unwrap()
            .forbidden
            .insert(resource.to_owned());
    }

    /// Paths and queries of the requests so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn full(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

fn status(code: u16, reason: &str, message: String) -> Response<Body> {
    full(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

fn handle(st: &Arc<Mutex<State>>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    st.lock().unwrap().requests.push(format!("{path}?{query}"));
    if req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some("Bearer dev-token")
    {
        return status(401, "Unauthorized", "Unauthorized".into());
    }
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if path == "/api/v1/namespaces" {
        let s = st.lock().unwrap();
        if s.forbidden.contains("namespaces") {
            return status(403, "Forbidden", "namespaces is forbidden: User \"dev\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope".into());
        }
        let items: Vec<Value> = s
            .namespaces
            .iter()
            .map(|n| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": n}}))
            .collect();
        return full(
            200,
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {"resourceVersion": s.version.to_string()}, "items": items}),
        );
    }
    if path == "/apis/argoproj.io/v1alpha1" && st.lock().unwrap().rollouts_crd {
        return full(
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "argoproj.io/v1alpha1",
                "resources": [{"name": "rollouts", "singularName": "rollout", "namespaced": true, "kind": "Rollout", "verbs": ["list", "watch"]}]}),
        );
    }
    if segments.get(1) == Some(&"argoproj.io") && !st.lock().unwrap().rollouts_crd {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    }
    // /api/v1/namespaces/NS/pods or /apis/apps/v1/namespaces/NS/{deployments,statefulsets}
    let (ns, resource) = match segments.as_slice() {
        ["api", "v1", "namespaces", ns, r]
        | ["apis", "apps", "v1", "namespaces", ns, r]
        | ["apis", "argoproj.io", "v1alpha1", "namespaces", ns, r] => {
            (ns.to_string(), r.to_string())
        }
        _ => {
            return status(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            );
        }
    };
    if api_path(&resource) != path.split("/namespaces").next().unwrap_or("") {
        return status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        );
    }
    let mut s = st.lock().unwrap();
    if s.forbidden.contains(&resource) {
        return status(
            403,
            "Forbidden",
            format!(
                "{resource} is forbidden: User \"dev\" cannot list resource \"{resource}\" in namespace \"{ns}\""
            ),
        );
    }
    if watch {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        s.watchers.push((resource, ns, tx));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(stream).boxed())
            .unwrap();
    }
    let items: Vec<Value> = s
        .objects
        .get(&(resource.clone(), ns))
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    let (api_version, kind) = kind_of(&resource);
    full(
        200,
        json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {"resourceVersion": s.version.to_string()}, "items": items}),
    )
}

/// A running pod with one container and a port.
pub fn pod(name: &str, ready: bool) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "api:1", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": "app", "ready": ready, "restartCount": 0, "image": "api:1", "imageID": ""}]
        }
    })
}

/// A deployment with `ready` of `replicas` ready.
pub fn deployment(name: &str, ready: i32, replicas: i32) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]}}},
        "status": {"readyReplicas": ready, "replicas": replicas}
    })
}
