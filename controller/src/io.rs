//! Reading a device or image file at an offset, and random bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the
/// file. Returns how many were read.
pub fn read_at(f: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// `n` bytes from the operating system's random source (volume keys, and
/// the noise that wipes a region).
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_what_is_there_and_stops_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(super::read_at(&f, 3, &mut buf).unwrap(), 4);
        assert_eq!(&buf, b"3456");
        assert_eq!(super::read_at(&f, 8, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"89");
    }
}
