//! PROXY protocol (v1 text and v2 binary) in front of the gateway listener.
//!
//! Load balancers that forward raw TCP (AWS NLB, HAProxy in `mode tcp`) announce the real client
//! in a PROXY protocol header before the first HTTP byte. Pingora 0.9 reads that header only on
//! TLS listeners, so when `proxy_protocol` is on, Latchkey terminates it in a small relay: the
//! relay owns the public listener, reads and strips the header, and splices the connection to
//! the gateway's internal loopback listener. It remembers which internal connection carries
//! which client ([`ProxiedPeers`]), so the locks see the real client address.
//!
//! Trust follows the same rule as `X-Forwarded-For`: the announced source is believed only when
//! the connection comes from a peer in `trusted_proxies`; from anyone else the header is read
//! (and stripped) but its address ignored. A connection that does not start with a valid header
//! within [`HEADER_TIMEOUT`] is closed: a PROXY protocol listener must never guess.

use ipnet::IpNet;
use ppp::{HeaderResult, PartialResult};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a new connection may take to send its PROXY header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest header accepted: a v2 header with its TLVs (v1 is at most 107 bytes).
const MAX_HEADER: usize = 16 + 4096;

/// Which internal connection carries which client.
#[derive(Default)]
pub struct ProxiedPeers {
    map: Mutex<HashMap<SocketAddr, IpAddr>>,
}

impl ProxiedPeers {
    /// The client behind an internal connection whose far end (the relay's side) is `relay`.
    pub fn lookup(&self, relay: &SocketAddr) -> Option<IpAddr> {
        self.lock().get(relay).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, IpAddr>> {
        // Single inserts and removes: a panic elsewhere cannot leave the map half-updated.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many connections are being relayed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes a mapping when its connection ends, however it ends.
struct Mapping<'a> {
    peers: &'a ProxiedPeers,
    relay: SocketAddr,
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        self.peers.lock().remove(&self.relay);
    }
}

/// Why a header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The bytes are not a PROXY protocol header.
    #[error("not a PROXY protocol header")]
    Invalid,
    /// More bytes are needed.
    #[error("incomplete PROXY protocol header")]
    Incomplete,
}

/// Parses a PROXY header at the start of `buf`: the source it announces (`None` for `LOCAL`,
/// `UNKNOWN` or non-IP families) and the header's length.
pub fn parse_header(buf: &[u8]) -> Result<(Option<IpAddr>, usize), HeaderError> {
    let parsed = HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        return Err(HeaderError::Incomplete);
    }
    match parsed {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
                ppp::v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
                ppp::v1::Addresses::Unknown => None,
            };
            Ok((source, h.header.len()))
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => Some(IpAddr::V4(a.source_address)),
                (_, ppp::v2::Addresses::IPv6(a)) => Some(IpAddr::V6(a.source_address)),
                _ => None,
            };
            Ok((source, h.len()))
        }
        _ => Err(HeaderError::Invalid),
    }
}

/// The client a connection stands for: the announced source when the peer is trusted.
pub fn client_for(peer: IpAddr, announced: Option<IpAddr>, trusted: &[IpNet]) -> IpAddr {
    let peer = latchkey_policy::locks::ip::canonical(peer);
    match announced {
        Some(src) if trusted.iter().any(|n| n.contains(&peer)) => {
            latchkey_policy::locks::ip::canonical(src)
        }
        _ => peer,
    }
}

/// Accepts connections on `listener` and relays each to `backend` once its PROXY header is read.
/// Runs until the listener fails.
pub async fn serve(
    listener: TcpListener,
    backend: SocketAddr,
    peers: Arc<ProxiedPeers>,
    trusted: Arc<Vec<IpNet>>,
) {
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "PROXY protocol listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (peers, trusted) = (peers.clone(), trusted.clone());
        tokio::spawn(async move {
            if let Err(e) = relay(conn, peer, backend, &peers, &trusted).await {
                tracing::debug!(%peer, error = %e, "PROXY protocol connection closed");
            }
        });
    }
}

async fn relay(
    mut inbound: TcpStream,
    peer: SocketAddr,
    backend: SocketAddr,
    peers: &ProxiedPeers,
    trusted: &[IpNet],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(256);
    let (announced, used) = tokio::time::timeout(HEADER_TIMEOUT, async {
        let mut chunk = [0u8; 512];
        loop {
            let n = inbound.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed before a PROXY header"));
            }
            buf.extend_from_slice(&chunk[..n]);
            match parse_header(&buf) {
                Ok(found) => return Ok(found),
                Err(HeaderError::Incomplete) if buf.len() < MAX_HEADER => continue,
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::other("no PROXY header in time"))??;
    let client = client_for(peer.ip(), announced, trusted);
    let mut outbound = TcpStream::connect(backend).await?;
    outbound.set_nodelay(true)?;
    let _mapping = {
        let relay = outbound.local_addr()?;
        peers.lock().insert(relay, client);
        Mapping { peers, relay }
    };
    // Registered before the first request byte reaches the gateway.
    outbound.write_all(&buf[used..]).await?;
    tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_parse_with_their_length() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\r\nGET / HTTP/1.1\r\n";
        let (src, len) = parse_header(v1).unwrap();
        assert_eq!(src, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(&v1[len..len + 3], b"GET");
        let v1 = b"PROXY TCP6 2001:db8::1 2001:db8::2 5555 8080\r\n";
        assert_eq!(
            parse_header(v1).unwrap().0,
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_header(b"PROXY UNKNOWN\r\n").unwrap().0, None);

        let addrs: ppp::v2::Addresses = (
            "198.51.100.9:4000".parse::<SocketAddr>().unwrap(),
            "10.0.0.1:8080".parse::<SocketAddr>().unwrap(),
        )
            .into();
        let mut v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addrs,
        )
        .build()
        .unwrap();
        let header_len = v2.len();
        v2.extend_from_slice(b"GET /");
        let (src, len) = parse_header(&v2).unwrap();
        assert_eq!(src, Some("198.51.100.9".parse().unwrap()));
        assert_eq!(len, header_len);
    }

    #[test]
    fn partial_and_invalid_headers() {
        assert_eq!(
            parse_header(b"PROXY TCP4 203.0"),
            Err(HeaderError::Incomplete)
        );
        assert_eq!(
            parse_header(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HeaderError::Invalid)
        );
    }

    #[test]
    fn announced_source_is_believed_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let src: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(
            client_for("10.1.2.3".parse().unwrap(), Some(src), &trusted),
            src
        );
        assert_eq!(
            client_for("192.0.2.1".parse().unwrap(), Some(src), &trusted),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_for("10.1.2.3".parse().unwrap(), None, &trusted),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
