//! The output's bytes: any range of header + pieces, or the whole of it
//! to a writer or file to file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use super::ExportPlan;

impl ExportPlan {
    /// A reader of output bytes `start..end` (clamped to the length).
    pub fn reader(&self, start: u64, end: u64) -> ExportReader<'_> {
        let end = end.min(self.len);
        ExportReader {
            plan: self,
            pos: start.min(end),
            end,
            open: None,
        }
    }

    /// Writes the whole output to `out`, calling `progress(bytes_done)`
    /// now and then. Blocking.
    pub fn write_to(
        &self,
        out: &mut impl io::Write,
        mut progress: impl FnMut(u64),
    ) -> io::Result<u64> {
        let mut r = self.reader(0, self.len);
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(buf.get(..n).unwrap_or_default())?;
            done += n as u64;
            progress(done);
        }
        Ok(done)
    }
}

impl ExportPlan {
    /// Writes the whole output to the file `out` (at its current position):
    /// the header, then each piece copied file to file, which the kernel
    /// does without a trip through user space where it can
    /// (`copy_file_range`). `progress(bytes_done)` after every piece.
    /// Blocking.
    pub fn write_file(&self, out: &mut File, mut progress: impl FnMut(u64)) -> io::Result<u64> {
        use std::io::Write as _;
        out.write_all(&self.header)?;
        let mut done = self.header.len() as u64;
        progress(done);
        let mut open: Option<(usize, File)> = None;
        for p in &self.pieces {
            let f = match &mut open {
                Some((i, f)) if *i == p.file => f,
                slot => {
                    let path = self
                        .files
                        .get(p.file)
                        .ok_or_else(|| io::Error::other("bad piece"))?;
                    &mut slot.insert((p.file, File::open(path)?)).1
                }
            };
            f.seek(SeekFrom::Start(p.offset))?;
            let n = io::copy(&mut Read::by_ref(f).take(p.len), out)?;
            if n != p.len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archived file shorter than planned",
                ));
            }
            done += n;
            progress(done);
        }
        Ok(done)
    }
}

/// Reads a byte range of an [`ExportPlan`]'s output; holds at most one open
/// file.
#[derive(Debug)]
pub struct ExportReader<'a> {
    plan: &'a ExportPlan,
    pos: u64,
    end: u64,
    open: Option<(usize, File)>,
}

impl ExportReader<'_> {
    /// Bytes left.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }
}

impl Read for ExportReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.end - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let hlen = self.plan.header.len() as u64;
        if self.pos < hlen {
            let from = self.pos as usize;
            let n = want.min(self.plan.header.len() - from);
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), self.plan.header.get(from..from + n))
            {
                dst.copy_from_slice(src);
            }
            self.pos += n as u64;
            return Ok(n);
        }
        // The piece holding pos.
        let i = self
            .plan
            .pieces
            .partition_point(|p| p.out_offset + p.len <= self.pos);
        let Some(p) = self.plan.pieces.get(i) else {
            return Ok(0);
        };
        let within = self.pos - p.out_offset;
        let n = want.min(usize::try_from(p.len - within).unwrap_or(usize::MAX));
        let file = match &mut self.open {
            Some((idx, f)) if *idx == p.file => f,
            slot => {
                let path = self
                    .plan
                    .files
                    .get(p.file)
                    .ok_or_else(|| io::Error::other("bad piece"))?;
                let f = File::open(path)?;
                &mut slot.insert((p.file, f)).1
            }
        };
        file.seek(SeekFrom::Start(p.offset + within))?;
        let dst = buf.get_mut(..n).unwrap_or_default();
        file.read_exact(dst)?;
        self.pos += n as u64;
        Ok(n)
    }
}
