//! A TCP echo server on 127.0.0.1 that reads into pooled [`ByteBuf`]s with
//! tokio's `read_buf` and writes them back with `write_all_buf`.
//!
//! Run it with `cargo run -p arenabuf --example tokio_echo [PORT]` (port 0,
//! the default, picks a free one) and talk to it with `nc 127.0.0.1 PORT`.
//!
//! Every read gets a fresh buffer from the pool and every write gives it
//! back: after the first few reads the thread caches serve them without
//! touching an arena. Tasks move between worker threads, so buffers are
//! often released on another thread than the one that allocated them.

use arenabuf::PooledAllocator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The capacity of each read buffer: a pooled 4 KiB class.
pub const READ_BUFFER_CAPACITY: usize = 4096;

/// Accepts connections on `listener` forever, echoing each on its own task.
///
/// # Errors
///
/// When accepting fails.
pub async fn serve(listener: TcpListener, alloc: PooledAllocator) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let alloc = alloc.clone();
        tokio::spawn(async move {
            if let Err(err) = echo(stream, &alloc).await {
                eprintln!("tokio_echo: connection failed: {err}");
            }
        });
    }
}

/// Echoes everything `stream` sends until it closes its side.
///
/// # Errors
///
/// When reading or writing fails.
pub async fn echo(mut stream: TcpStream, alloc: &PooledAllocator) -> std::io::Result<()> {
    // Echo each piece at once rather than waiting (Nagle) for the peer's
    // delayed acknowledgement of the previous one.
    stream.set_nodelay(true)?;
    loop {
        let mut buf = alloc.direct_buffer(READ_BUFFER_CAPACITY);
        // `read_buf` fills the writable bytes through `BufMut` and advances
        // the writer index; `write_all_buf` drains the readable bytes through
        // `Buf`. No copy between them.
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        stream.write_all_buf(&mut buf).await?;
    }
}

#[allow(dead_code)] // The integration test includes this file for `serve`.
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => 0,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("echoing on {}", listener.local_addr()?);
    serve(listener, PooledAllocator::new()).await
}
