//! Remote resync: the SIP `NOTIFY` with `Event: check-sync` that makes a Cisco SIP phone fetch
//! `syncinfo.xml` and, when its `SYNC` value changed, reboot and re-read its configuration
//! (reference §1.9). Pure message building and parsing, plus a small UDP sender that waits briefly
//! for the phone's answer.
//!
//! The message is RFC 3265 style, out of dialog (no subscription exists):
//!
//! ```text
//! NOTIFY sip:1001@192.0.2.10:5060 SIP/2.0
//! Via: SIP/2.0/UDP 192.0.2.1:40312;branch=z9hG4bK…;rport
//! Max-Forwards: 70
//! From: <sip:dialtone@192.0.2.1>;tag=…
//! To: <sip:1001@192.0.2.10>
//! Call-ID: …@192.0.2.1
//! CSeq: 1 NOTIFY
//! Event: check-sync
//! Subscription-State: terminated
//! Contact: <sip:dialtone@192.0.2.1:40312>
//! User-Agent: dialtone
//! Content-Length: 0
//! ```
//!
//! Phones configured to challenge requests answer `401`/`407`; that is reported as such and never
//! retried with credentials.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// The port SIP phones listen on unless configured otherwise (`voip_control_port` of a 7940/7960).
pub const SIP_PORT: u16 = 5060;

/// The random parts of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    /// Via branch, including the RFC 3261 magic cookie `z9hG4bK`.
    pub branch: String,
    /// From tag.
    pub tag: String,
    /// Local part of the Call-ID (the `@host` is added from the local address).
    pub call_id: String,
}

impl Ids {
    /// Fresh random values.
    pub fn random() -> Ids {
        let a = uuid::Uuid::new_v4().simple().to_string();
        let b = uuid::Uuid::new_v4().simple().to_string();
        Ids {
            branch: format!("z9hG4bK{}", &a[..16]),
            tag: a[16..26].to_owned(),
            call_id: b,
        }
    }
}

/// A host as written in a SIP URI or Via (IPv6 in brackets).
fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Escapes a SIP URI user part (RFC 3261 `user`: unreserved, escaped and user-unreserved characters).
fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Call-ID of a request with `ids` sent from `local`.
pub fn call_id(ids: &Ids, local: SocketAddr) -> String {
    format!("{}@{}", ids.call_id, host(local.ip()))
}

/// The complete `NOTIFY` (`Event: check-sync`) to the phone at `target` whose first line is `user`
/// (none: a URI without user part), sent from `local`. Lines end in CRLF; there is no body.
pub fn check_sync_notify(
    user: Option<&str>,
    target: SocketAddr,
    local: SocketAddr,
    ids: &Ids,
) -> String {
    let user_at = user
        .filter(|u| !u.is_empty())
        .map(|u| format!("{}@", escape_user(u)))
        .unwrap_or_default();
    let (them, us) = (host(target.ip()), host(local.ip()));
    let (tport, lport) = (target.port(), local.port());
    let cid = call_id(ids, local);
    let (branch, tag) = (&ids.branch, &ids.tag);
    format!(
        "NOTIFY sip:{user_at}{them}:{tport} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {us}:{lport};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:dialtone@{us}>;tag={tag}\r\n\
         To: <sip:{user_at}{them}>\r\n\
         Call-ID: {cid}\r\n\
         CSeq: 1 NOTIFY\r\n\
         Event: check-sync\r\n\
         Subscription-State: terminated\r\n\
         Contact: <sip:dialtone@{us}:{lport}>\r\n\
         User-Agent: dialtone\r\n\
         Content-Length: 0\r\n\
         \r\n"
    )
}

/// A SIP response's status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
}

impl Answer {
    /// Whether the phone asked for digest authentication (401 / 407).
    pub fn wants_auth(&self) -> bool {
        matches!(self.status, 401 | 407)
    }

    /// Whether this is a final (non-1xx) response.
    pub fn is_final(&self) -> bool {
        self.status >= 200
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.status)
        } else {
            write!(f, "{} {}", self.status, self.reason)
        }
    }
}

/// Parses `datagram` as a SIP response to the request with Call-ID `call_id` (CSeq method NOTIFY);
/// `None` for anything else (requests, other calls, garbage).
pub fn parse_response(datagram: &[u8], call_id: &str) -> Option<Answer> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let status_line = lines.next()?;
    let rest = status_line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let status: u16 = code.parse().ok().filter(|s| (100..700).contains(s))?;
    let (mut cid_ok, mut cseq_ok) = (false, false);
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("Call-ID") || name.eq_ignore_ascii_case("i") {
            cid_ok = value == call_id;
        } else if name.eq_ignore_ascii_case("CSeq") {
            cseq_ok = value
                .split_whitespace()
                .nth(1)
                .is_some_and(|m| m.eq_ignore_ascii_case("NOTIFY"));
        }
    }
    (cid_ok && cseq_ok).then(|| Answer {
        status,
        reason: reason.trim().to_owned(),
    })
}

/// What happened to one `NOTIFY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The address it was sent from (as written in Via and Contact).
    pub local: SocketAddr,
    /// The last response received within the wait (a final one ends the wait).
    pub answer: Option<Answer>,
    /// The target's host answered with ICMP "port unreachable": nothing listens there.
    pub refused: bool,
}

/// Sends one check-sync `NOTIFY` to `target` from an ephemeral UDP port and waits up to `wait` for a
/// final response. Errors only when the datagram could not be sent at all.
pub async fn send_check_sync(
    target: SocketAddr,
    user: Option<&str>,
    wait: Duration,
) -> std::io::Result<Delivery> {
    let target = SocketAddr::new(target.ip().to_canonical(), target.port());
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).await?;
    // Connecting picks the source address the route would use: that is what Via and Contact name.
    socket.connect(target).await?;
    let local = socket.local_addr()?;
    let ids = Ids::random();
    let cid = call_id(&ids, local);
    let message = check_sync_notify(user, target, local, &ids);
    socket.send(message.as_bytes()).await?;
    let mut delivery = Delivery {
        local,
        answer: None,
        refused: false,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => break,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                delivery.refused = true;
                break;
            }
            // Other receive errors (a transient ICMP error): keep listening until the deadline.
            Ok(Err(_)) => continue,
            Ok(Ok(n)) => {
                if let Some(answer) = parse_response(&buf[..n], &cid) {
                    let done = answer.is_final();
                    delivery.answer = Some(answer);
                    if done {
                        break;
                    }
                }
            }
        }
    }
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Ids {
        Ids {
            branch: "z9hG4bK0123456789abcdef".into(),
            tag: "a1b2c3d4e5".into(),
            call_id: "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e".into(),
        }
    }

    #[test]
    fn the_notify_is_exactly_what_cisco_phones_expect() {
        let msg = check_sync_notify(
            Some("1001"),
            "192.0.2.10:5060".parse().unwrap(),
            "192.0.2.1:40312".parse().unwrap(),
            &ids(),
        );
        assert_eq!(
            msg,
            "NOTIFY sip:1001@192.0.2.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:40312;branch=z9hG4bK0123456789abcdef;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:dialtone@192.0.2.1>;tag=a1b2c3d4e5\r\n\
             To: <sip:1001@192.0.2.10>\r\n\
             Call-ID: 4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e@192.0.2.1\r\n\
             CSeq: 1 NOTIFY\r\n\
             Event: check-sync\r\n\
             Subscription-State: terminated\r\n\
             Contact: <sip:dialtone@192.0.2.1:40312>\r\n\
             User-Agent: dialtone\r\n\
             Content-Length: 0\r\n\
             \r\n"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed_and_odd_users_escaped() {
        let msg = check_sync_notify(
            Some("10 01#"),
            "[2001:db8::10]:5062".parse().unwrap(),
            "[2001:db8::1]:40000".parse().unwrap(),
            &ids(),
        );
        assert!(
            msg.starts_with("NOTIFY sip:10%2001%23@[2001:db8::10]:5062 SIP/2.0\r\n"),
            "{msg}"
        );
        assert!(
            msg.contains("\r\nVia: SIP/2.0/UDP [2001:db8::1]:40000;"),
            "{msg}"
        );
        assert!(msg.contains("\r\nTo: <sip:10%2001%23@[2001:db8::10]>\r\n"));
        let anonymous = check_sync_notify(
            None,
            "192.0.2.10:5060".parse().unwrap(),
            "192.0.2.1:1".parse().unwrap(),
            &ids(),
        );
        assert!(anonymous.starts_with("NOTIFY sip:192.0.2.10:5060 SIP/2.0\r\n"));
        assert!(anonymous.contains("\r\nTo: <sip:192.0.2.10>\r\n"));
    }

    #[test]
    fn random_ids_carry_the_magic_cookie_and_differ() {
        let (a, b) = (Ids::random(), Ids::random());
        assert!(a.branch.starts_with("z9hG4bK") && a.branch.len() > 7 + 8);
        assert_ne!(a, b);
    }

    #[test]
    fn responses_are_matched_by_call_id_and_cseq() {
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:4;branch=z9hG4bKx\r\ncall-id: abc@192.0.2.1\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_response(ok, "abc@192.0.2.1"),
            Some(Answer {
                status: 200,
                reason: "OK".into()
            })
        );
        assert_eq!(parse_response(ok, "other@192.0.2.1"), None);
        let auth = b"SIP/2.0 401 Unauthorized\r\ni: abc@h\r\nCSeq: 1 NOTIFY\r\n\r\n";
        let a = parse_response(auth, "abc@h").unwrap();
        assert!(a.wants_auth() && a.is_final());
        assert_eq!(a.to_string(), "401 Unauthorized");
        let invite = b"SIP/2.0 200 OK\r\nCall-ID: abc@h\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(parse_response(invite, "abc@h"), None);
        let request = b"NOTIFY sip:x@h SIP/2.0\r\nCall-ID: abc@h\r\nCSeq: 1 NOTIFY\r\n\r\n";
        assert_eq!(parse_response(request, "abc@h"), None);
        assert_eq!(parse_response(b"\xff\xfe", "abc@h"), None);
        let trying = parse_response(
            b"SIP/2.0 100 Trying\r\nCall-ID: abc@h\r\nCSeq: 1 NOTIFY\r\n\r\n",
            "abc@h",
        )
        .unwrap();
        assert!(!trying.is_final());
    }

    #[tokio::test]
    async fn sends_and_reports_the_answer() {
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = phone.local_addr().unwrap();
        let answering = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let (n, from) = phone.recv_from(&mut buf).await.unwrap();
            let text = String::from_utf8(buf[..n].to_vec()).unwrap();
            let cid = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .unwrap()
                .to_owned();
            let reply = format!("SIP/2.0 200 OK\r\nCall-ID: {cid}\r\nCSeq: 1 NOTIFY\r\n\r\n");
            phone.send_to(reply.as_bytes(), from).await.unwrap();
            (text, from)
        });
        let d = send_check_sync(target, Some("1001"), Duration::from_secs(2))
            .await
            .unwrap();
        let (text, from) = answering.await.unwrap();
        assert_eq!(d.answer.unwrap().to_string(), "200 OK");
        assert_eq!(from, d.local);
        assert!(text.starts_with(&format!("NOTIFY sip:1001@{target} SIP/2.0\r\n")));
    }

    #[tokio::test]
    async fn silence_and_refusal_are_not_errors() {
        // Bound but silent.
        let quiet = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let d = send_check_sync(
            quiet.local_addr().unwrap(),
            None,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        assert_eq!((d.answer, d.refused), (None, false));
        // Nothing listening: loopback answers with ICMP port unreachable.
        let port = quiet.local_addr().unwrap().port();
        drop(quiet);
        let d = send_check_sync(
            SocketAddr::from(([127, 0, 0, 1], port)),
            None,
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        assert!(d.answer.is_none());
        assert!(d.refused);
    }
}
