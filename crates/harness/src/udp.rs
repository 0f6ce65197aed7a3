//! UDP for the proxy's listeners (`udp[]`): a free port, and a real sender: Python's `socket`
//! module, a client that shares no code with the proxy.

use std::io::Write as _;
use std::net::UdpSocket;
use std::process::{Command, Stdio};

/// A loopback UDP port that was free a moment ago and that this process has not handed out
/// before (the register is shared with [`crate::free_port`]'s TCP ports).
pub fn free_port() -> u16 {
    loop {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 (UDP)");
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        if crate::claim_port(port) {
            return port;
        }
    }
}

/// Whether nothing is bound to UDP `127.0.0.1:port` (a socket can be bound there now).
pub fn is_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// Sends `datagrams` to `127.0.0.1:port`, in order, from one socket, with Python's `socket`
/// module (the script goes through stdin, so there is no limit on their size). Panics when
/// python3 is missing or fails.
pub fn send(port: u16, datagrams: &[impl AsRef<str>]) {
    let list: Vec<&str> = datagrams.iter().map(AsRef::as_ref).collect();
    // A JSON array of strings is a Python list literal.
    let list = serde_json::to_string(&list).unwrap();
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for d in {list}:\n    s.sendto(d.encode(), ('127.0.0.1', {port}))\n"
    );
    let python = crate::python_with("socket", "apt-get install python3");
    let mut child = Command::new(python)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python (socket): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
