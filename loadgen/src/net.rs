//! Opening client WebSockets: spread over several source addresses, at a
//! bounded rate, authenticated with the `Authorization: Bearer` header.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws = WebSocketStream<TcpStream>;

/// Source addresses that client sockets bind to before connecting. Each
/// (source address, destination address and port) has its own ~28k
/// ephemeral ports, so several loopback sources let one gateway port take
/// more connections than that.
#[derive(Debug, Clone, Default)]
pub struct SourceIps(pub Vec<IpAddr>);

impl std::str::FromStr for SourceIps {
    type Err = anyhow::Error;

    /// `127.0.0.1-127.0.0.8` (an IPv4 range), or a comma-separated list.
    fn from_str(s: &str) -> anyhow::Result<SourceIps> {
        let mut ips = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((first, last)) = part.split_once('-') {
                let first: Ipv4Addr = first
                    .trim()
                    .parse()
                    .with_context(|| format!("bad address in {part}"))?;
                let last: Ipv4Addr = last
                    .trim()
                    .parse()
                    .with_context(|| format!("bad address in {part}"))?;
                let (first, last) = (u32::from(first), u32::from(last));
                if last < first || last - first >= 1024 {
                    bail!("source range {part} must be ascending and hold at most 1024 addresses");
                }
                ips.extend((first..=last).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
            } else {
                ips.push(
                    part.parse()
                        .with_context(|| format!("bad source address {part}"))?,
                );
            }
        }
        if ips.is_empty() {
            bail!("no source address in {s:?}");
        }
        Ok(SourceIps(ips))
    }
}

/// A gateway as given on the command line (`http://host:port`), resolved
/// once.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// `http://host:port`, without a trailing slash.
    pub http: String,
    /// `ws://host:port/ws`.
    pub ws: String,
    pub addr: SocketAddr,
}

impl Gateway {
    pub async fn resolve(url: &str) -> anyhow::Result<Gateway> {
        let http = url.trim_end_matches('/').to_owned();
        let Some(authority) = http.strip_prefix("http://") else {
            bail!("gateway {url:?} must be an http:// URL (the load generator speaks no TLS)");
        };
        if authority.contains('/') {
            bail!("gateway {url:?} must be a base URL without a path");
        }
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        Ok(Gateway {
            ws: format!("ws://{authority}/ws"),
            http,
            addr,
        })
    }
}

/// Spaces out events to a maximum rate, shared by every task that waits on
/// it.
pub struct Pacer {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    /// `per_second` of 0 (or less) means no limit.
    pub fn new(per_second: f64) -> Pacer {
        let interval = (per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / per_second));
        Pacer {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    pub async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Opens WebSockets to the gateways.
pub struct Connector {
    gateways: Vec<Gateway>,
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
    pacer: Pacer,
    timeout: Duration,
}

impl Connector {
    pub fn new(
        gateways: Vec<Gateway>,
        sources: Option<SourceIps>,
        connect_rate: f64,
        timeout: Duration,
    ) -> anyhow::Result<Connector> {
        let sources = sources.map(|s| s.0).unwrap_or_default();
        for gateway in &gateways {
            if let Some(source) = sources
                .iter()
                .find(|s| s.is_ipv4() != gateway.addr.is_ipv4())
            {
                bail!(
                    "source address {source} cannot reach gateway {} ({})",
                    gateway.http,
                    gateway.addr
                );
            }
        }
        Ok(Connector {
            gateways,
            sources,
            next_source: AtomicUsize::new(0),
            pacer: Pacer::new(connect_rate),
            timeout,
        })
    }

    /// Opens a WebSocket to gateway `index % gateways`, waiting its turn
    /// under the connect rate.
    pub async fn connect(&self, index: usize, token: &str) -> anyhow::Result<Ws> {
        self.pacer.wait().await;
        self.connect_now(index, token).await
    }

    /// Opens a WebSocket at once, outside the connect rate: reconnecting
    /// clients space themselves out with their own back-off.
    pub async fn connect_now(&self, index: usize, token: &str) -> anyhow::Result<Ws> {
        let gateway = &self.gateways[index % self.gateways.len()];
        tokio::time::timeout(self.timeout, self.open(gateway, token))
            .await
            .with_context(|| format!("connecting to {} timed out", gateway.ws))?
    }

    async fn open(&self, gateway: &Gateway, token: &str) -> anyhow::Result<Ws> {
        let socket = if gateway.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.sources.is_empty() {
            let turn = self.next_source.fetch_add(1, Ordering::Relaxed);
            let source = self.sources[turn % self.sources.len()];
            socket
                .bind(SocketAddr::new(source, 0))
                .with_context(|| format!("cannot bind to source address {source}"))?;
        }
        let stream = socket
            .connect(gateway.addr)
            .await
            .with_context(|| format!("cannot connect to {}", gateway.addr))?;
        // Frames are small and latency is what is measured.
        stream.set_nodelay(true)?;
        let mut request = gateway.ws.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .with_context(|| format!("WebSocket handshake with {} failed", gateway.ws))?;
        Ok(ws)
    }
}
