//! The listener's bounds on real sockets: one address cannot take more
//! than its share of the connection cap (a flood from 127.0.0.2 leaves
//! 127.0.0.1 served), and a connection without a client certificate is
//! closed at the end of its lifetime however busy it keeps the line.

use std::time::{Duration, Instant};
use tls::listener::{incoming, Conn, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_stream::StreamExt;

async fn connect_from(from: &str, to: std::net::SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

fn limits() -> Limits {
    Limits {
        max_connections: 16,
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        per_peer: 4,
        uncertified_lifetime: Duration::from_secs(1),
    }
}

/// Serves each accepted connection by echoing what it reads; sends the
/// count of accepted connections on `accepted`.
fn serve(listener: TcpListener, accepted: tokio::sync::mpsc::UnboundedSender<()>) {
    let mut conns = incoming(listener, None, limits());
    tokio::spawn(async move {
        while let Some(Ok(conn)) = conns.next().await {
            let _ = accepted.send(());
            tokio::spawn(echo(conn));
        }
    });
}

async fn echo(mut conn: Conn) {
    let mut buf = [0u8; 64];
    while let Ok(n) = conn.read(&mut buf).await {
        if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_the_cap_and_an_uncertified_connection_ends_in_time() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    serve(listener, tx);

    // Twelve connections from one address: four are served.
    let mut flood = Vec::new();
    for _ in 0..12 {
        flood.push(connect_from("127.0.0.2", addr).await);
    }
    let mut served = 0;
    while tokio::time::timeout(Duration::from_millis(300), rx.recv())
        .await
        .is_ok()
    {
        served += 1;
    }
    assert_eq!(served, 4, "connections served from 127.0.0.2");

    // Another address still gets in, and is answered.
    let mut admin = connect_from("127.0.0.1", addr).await;
    admin.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(2), admin.read_exact(&mut got))
        .await
        .expect("the other address is served")
        .unwrap();
    assert_eq!(&got, b"ping");

    // Busy all the time, yet closed after its lifetime (1 s here).
    let started = Instant::now();
    let closed = loop {
        if admin.write_all(b"x").await.is_err() {
            break started.elapsed();
        }
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), admin.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never closed");
    };
    assert!(
        closed >= Duration::from_millis(500),
        "closed too soon: {closed:?}"
    );
    drop(flood);
}
