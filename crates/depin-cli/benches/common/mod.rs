//! Helpers shared by the benchmarks that run a devnet.

use std::net::TcpListener;
use std::process::{Child, Command};

/// A running `depin devnet`; stopped with SIGTERM when dropped.
pub struct Devnet(pub Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// A base port whose node ports (base + 10 i + 0..3) are all free.
pub fn free_base_port(nodes: u16) -> u16 {
    loop {
        let base = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(20_000);
        if u32::from(base) + 10 * u32::from(nodes) + 3 > 65_535 {
            continue;
        }
        if (0..nodes)
            .all(|i| (0..3).all(|o| TcpListener::bind(("127.0.0.1", base + 10 * i + o)).is_ok()))
        {
            return base;
        }
    }
}
