//! What the kernel knows of a UDP socket: the datagrams it dropped because the socket's
//! receive buffer was full (`drops`, the last column of `/proc/net/udp` and `/proc/net/udp6`),
//! found by the socket's inode. Nothing else counts them: the proxy never sees those datagrams.
//! And the receive buffer a socket gets by default.

use std::os::fd::AsFd;

/// The inode `/proc/net/udp*` names the socket by.
pub(super) fn inode(socket: impl AsFd) -> Option<u64> {
    let stat = rustix::fs::fstat(socket).ok()?;
    Some(stat.st_ino)
}

/// Datagrams the kernel dropped so far for the socket `inode` of this family; `None` when its
/// table cannot be read or does not list it.
pub(super) fn drops(inode: u64, ipv6: bool) -> Option<u64> {
    let table = if ipv6 {
        "/proc/net/udp6"
    } else {
        "/proc/net/udp"
    };
    drops_in(&std::fs::read_to_string(table).ok()?, inode)
}

/// The receive buffer a UDP socket gets when it asks for none (`net.core.rmem_default`).
pub(super) fn default_read_buffer() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/core/rmem_default")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `drops` of `inode`'s row in a `/proc/net/udp` table: `sl local_address rem_address st
/// tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops`.
fn drops_in(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        columns.get(12)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
  511: 00000000:1F99 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41207 2 0000000000000000 0         
  725: 0100007F:206F 00000000:0000 07 00000000:00034000 00:00000000 00000000     0        0 52118 2 0000000000000000 1734      
";

    #[test]
    fn the_drops_of_the_row_with_the_inode() {
        assert_eq!(drops_in(TABLE, 52118), Some(1734));
        assert_eq!(drops_in(TABLE, 41207), Some(0));
        assert_eq!(drops_in(TABLE, 1), None);
        assert_eq!(drops_in("", 1), None);
    }

    #[test]
    fn a_bound_socket_is_found_in_its_table() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inode = inode(&socket).unwrap();
        assert_eq!(drops(inode, false), Some(0));
        assert_eq!(drops(inode, true), None);
        assert!(default_read_buffer().is_some_and(|b| b > 0));
    }
}
