//! What every role binary shares: the flags that name the node to the
//! control plane's registry, and its heartbeat.

use std::net::SocketAddr;
use std::sync::Arc;

use ugc_auth::PublicUrls;
use ugc_auth::registry::{BeatAnswer, Heartbeat, NodeBeat, NodeLoad, NodeRole, default_node_id};
use ugc_core::Hub;

/// The node's name and addresses in the registry.
#[derive(Debug, clap::Args)]
pub struct NodeFlags {
    /// The address publishers, viewers and other nodes reach this node at
    /// (default: the source address of a route to the Internet).
    #[arg(long, env = "UGC_PUBLIC_HOST")]
    pub public_host: Option<String>,
    /// This node's id in the registry (default: the one `--data` keeps,
    /// else `<role>-<host>-<http port>`, kept there).
    #[arg(long, env = "UGC_NODE_ID")]
    pub node_id: Option<String>,
    /// Streams this node takes at most; publish URLs go to the node with the
    /// most room. A publishing node refuses a publisher of another stream
    /// beyond it, with the node that has room in the reason (0: not
    /// declared, counted as 100 for placement, nobody refused).
    #[arg(long, env = "UGC_CAPACITY", default_value_t = 0)]
    pub capacity: u32,
}

/// The node's id: `--node-id`, else the one `data/node-id` keeps, else
/// `<role>-<host>-<http port>`, then kept there when there is a data
/// directory, so that the registry and the leases know the node again after
/// a restart on another address.
pub fn node_id(
    flags: &NodeFlags,
    data: Option<&std::path::Path>,
    role: NodeRole,
    host: &str,
    http_port: u16,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    if let Some(id) = &flags.node_id {
        return Ok(id.clone());
    }
    let Some(data) = data else {
        return Ok(default_node_id(role, host, http_port));
    };
    let file = data.join("node-id");
    if let Ok(kept) = std::fs::read_to_string(&file) {
        let kept = kept.trim();
        if !kept.is_empty() {
            return Ok(kept.to_owned());
        }
    }
    let id = default_node_id(role, host, http_port);
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    std::fs::write(&file, format!("{id}\n"))
        .with_context(|| format!("keeping the node id in {}", file.display()))?;
    Ok(id)
}

/// The id [`spawn_heartbeat`] registers this node under, known before it
/// runs (a node that names its objects after itself).
pub fn own_id(
    flags: &NodeFlags,
    data: Option<&std::path::Path>,
    role: NodeRole,
    http_port: u16,
) -> anyhow::Result<String> {
    let host = flags
        .public_host
        .clone()
        .unwrap_or_else(PublicUrls::guess_host);
    node_id(flags, data, role, &host, http_port)
}

/// Where the node listens, as the registry shows it.
pub struct Listening {
    pub http: SocketAddr,
    pub rtmp: Option<SocketAddr>,
    /// RTMP over TLS, when the node has a certificate.
    pub rtmps: Option<SocketAddr>,
    pub srt: Option<SocketAddr>,
}

/// Registers the node and beats every interval, for ever: load and streams
/// from `hub`, egress from `egress_total` (bytes sent so far); each answer
/// goes to `answered` (a transcoder's leases); `pulls`: an origin that
/// carries streams on demand only. Returns the node's URL as
/// the registry shows it (`http://host:port`).
#[allow(clippy::too_many_arguments)]
pub fn spawn_heartbeat(
    flags: &NodeFlags,
    data: Option<&std::path::Path>,
    role: NodeRole,
    control_url: &str,
    token: &str,
    at: Listening,
    hub: Hub,
    egress_total: impl Fn() -> u64 + Send + 'static,
    priority: i32,
    pulls: bool,
    viewers: Option<Arc<ugc_core::viewers::ViewerCounter>>,
    answered: impl FnMut(&BeatAnswer) + Send + 'static,
) -> anyhow::Result<String> {
    let host = flags
        .public_host
        .clone()
        .unwrap_or_else(PublicUrls::guess_host);
    let d = PublicUrls::default();
    let public = PublicUrls {
        host: host.clone(),
        rtmp_port: at.rtmp.map_or(d.rtmp_port, |a| a.port()),
        srt_port: at.srt.map_or(d.srt_port, |a| a.port()),
        http_port: at.http.port(),
        http_base: None,
        rtmps_port: at.rtmps.map(|a| a.port()),
    };
    let id = own_id(flags, data, role, at.http.port())?;
    let template = NodeBeat {
        id,
        role,
        url: public.http(),
        public: Some(public),
        capacity: flags.capacity,
        load: NodeLoad::default(),
        streams: Vec::new(),
        standby: Vec::new(),
        fallback: Vec::new(),
        stats: Vec::new(),
        timelines: Default::default(),
        draining: false,
        priority,
        pulls,
    };
    template.check()?;
    tracing::info!(node = %template.id, url = %template.url, "registering with the control plane");
    let url = template.url.clone();
    tokio::spawn(
        Heartbeat::new(control_url, token)
            .with_viewers(viewers)
            .run_hub_with(template, hub, egress_total, answered),
    );
    Ok(url)
}
