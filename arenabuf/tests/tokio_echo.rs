//! Runs the `tokio_echo` example's server in-process on 127.0.0.1:0 and
//! sends 10,000 random messages through it, checking every byte.

#[path = "../examples/tokio_echo.rs"]
mod tokio_echo;

use std::time::Duration;

use arenabuf::PooledAllocator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MESSAGES: usize = 10_000;
const CONNECTIONS: usize = 4;
/// Longer than a read buffer, so that some messages come back in pieces.
const MAX_MESSAGE_LEN: usize = 3 * tokio_echo::READ_BUFFER_CAPACITY;

/// xorshift64*: reproducible random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

async fn client(addr: std::net::SocketAddr, seed: u64, messages: usize) -> usize {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut rng = Rng(seed);
    let mut echoed = Vec::new();
    for _ in 0..messages {
        let len = 1 + (rng.next() as usize) % MAX_MESSAGE_LEN;
        let message: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        stream.write_all(&message).await.unwrap();
        echoed.resize(len, 0);
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message, "an echoed message differs");
    }
    stream.shutdown().await.unwrap();
    assert_eq!(stream.read(&mut [0; 1]).await.unwrap(), 0, "nothing beyond the messages comes back");
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_messages_come_back_intact() {
    let alloc = PooledAllocator::builder().direct_arenas(2).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let server = tokio::spawn(tokio_echo::serve(listener, alloc.clone()));

    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|i| tokio::spawn(client(addr, 0x9E37_79B9_7F4A_7C15 ^ i as u64, MESSAGES / CONNECTIONS)))
        .collect();
    let all = async {
        let mut sent = 0;
        for client in clients {
            sent += client.await.unwrap();
        }
        sent
    };
    let sent = tokio::time::timeout(Duration::from_secs(120), all).await.expect("the echo finishes");
    assert_eq!(sent, MESSAGES);
    server.abort();
    assert!(alloc.metric().direct_arenas().iter().map(|a| a.num_allocations()).sum::<u64>() > 0);
}
