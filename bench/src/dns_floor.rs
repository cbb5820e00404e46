//! The `dns` scenario's floor: netpath's own batched UDP loop (`dns::batch::serve`, as its
//! server runs it) answering each query with its header alone made a response's (QR set, no
//! answer), in the lab netpath's server is measured in. It does the kernel's work for a query
//! and its reply and no DNS work, so no userspace server on that path can beat it. Run as
//! `bench --udp-floor ADDR:PORT` in the host's namespace, a process of its own so its CPU time
//! is measured as a server's.
use std::net::SocketAddr;

use anyhow::{Context as _, Result};

/// Serves `addr` until killed.
pub fn serve(addr: SocketAddr) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting a runtime")?;
    rt.block_on(async {
        let sock = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        netpath_user::dns::batch::serve(&sock, |query, _| {
            // The 12-byte header: QR set (byte 2's high bit), RA and NOERROR (byte 3); the
            // counts stay the query's (one question, nothing else).
            if query.len() < 12 {
                return None;
            }
            let mut reply = query.to_vec();
            reply[2] |= 0x80;
            reply[3] = 0x80;
            Some(reply)
        })
        .await;
        Ok(())
    })
}
