//! The only `unsafe` of ugc-codec: byte access to FFmpeg packets, frames
//! and codec extradata that rsmpeg 0.14 does not expose safely.
//!
//! Each function checks what FFmpeg guarantees before building a slice:
//! non-null pointers, non-negative sizes, and plane extents derived from the
//! frame's own `linesize` and height.
#![allow(unsafe_code)]

use rsmpeg::avcodec::{AVCodecContext, AVPacket};
use rsmpeg::avutil::{AVAudioFifo, AVFrame};
use rsmpeg::ffi;

/// A packet holding a copy of `data` (FFmpeg-owned, padded).
pub(crate) fn packet_from(data: &[u8]) -> Option<AVPacket> {
    let size = i32::try_from(data.len()).ok()?;
    let mut pkt = AVPacket::new();
    // SAFETY: `pkt` is a valid allocated packet; av_new_packet allocates
    // `size` bytes plus zeroed padding and sets data/size.
    let ret = unsafe { ffi::av_new_packet(pkt.as_mut_ptr(), size) };
    if ret < 0 {
        return None;
    }
    if size > 0 {
        // SAFETY: av_new_packet succeeded, so `data` points to at least
        // `size` writable bytes that do not overlap `data`.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), (*pkt.as_mut_ptr()).data, data.len());
        }
    }
    Some(pkt)
}

/// The payload of a packet.
pub(crate) fn packet_data(pkt: &AVPacket) -> &[u8] {
    let size = usize::try_from(pkt.size).unwrap_or(0);
    if pkt.data.is_null() || size == 0 {
        return &[];
    }
    // SAFETY: a packet returned by the encoder owns `size` bytes at `data`,
    // borrowed for the packet's lifetime.
    unsafe { std::slice::from_raw_parts(pkt.data, size) }
}

/// The codec context's extradata (e.g. x264's SPS/PPS with a global header).
pub(crate) fn extradata(ctx: &AVCodecContext) -> &[u8] {
    let size = usize::try_from(ctx.extradata_size).unwrap_or(0);
    if ctx.extradata.is_null() || size == 0 {
        return &[];
    }
    // SAFETY: extradata/extradata_size describe an FFmpeg-owned buffer that
    // lives as long as the context.
    unsafe { std::slice::from_raw_parts(ctx.extradata, size) }
}

/// Sets a (decoder's) extradata to a copy of `data`; before `open`.
pub(crate) fn set_extradata(ctx: &mut AVCodecContext, data: &[u8]) -> bool {
    let Ok(size) = i32::try_from(data.len()) else {
        return false;
    };
    let padding = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: av_mallocz returns a zeroed buffer of the requested size or
    // null; the context takes ownership (freed by avcodec_free_context).
    unsafe {
        let buf = ffi::av_mallocz(data.len() + padding) as *mut u8;
        if buf.is_null() {
            return false;
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        let raw = ctx.as_mut_ptr();
        if !(*raw).extradata.is_null() {
            ffi::av_freep(&mut (*raw).extradata as *mut *mut u8 as *mut std::ffi::c_void);
        }
        (*raw).extradata = buf;
        (*raw).extradata_size = size;
    }
    true
}

fn plane_len(frame: &AVFrame, plane: usize, rows: usize) -> Option<usize> {
    let stride = usize::try_from(*frame.linesize.get(plane)?).ok()?;
    stride.checked_mul(rows)
}

/// Plane `plane` of a writable video frame with `rows` rows, and its stride.
pub(crate) fn plane_mut(
    frame: &mut AVFrame,
    plane: usize,
    rows: usize,
) -> Option<(&mut [u8], usize)> {
    let len = plane_len(frame, plane, rows)?;
    let stride = usize::try_from(*frame.linesize.get(plane)?).ok()?;
    let ptr = *frame.data.get(plane)?;
    if ptr.is_null() || len == 0 {
        return None;
    }
    // SAFETY: the caller made the frame writable; a video plane holds at
    // least `linesize * rows` bytes for rows within the plane's height.
    Some((unsafe { std::slice::from_raw_parts_mut(ptr, len) }, stride))
}

/// Plane `plane` of a video frame with `rows` rows, and its stride.
pub(crate) fn plane(frame: &AVFrame, plane: usize, rows: usize) -> Option<(&[u8], usize)> {
    let len = plane_len(frame, plane, rows)?;
    let stride = usize::try_from(*frame.linesize.get(plane)?).ok()?;
    let ptr = *frame.data.get(plane)?;
    if ptr.is_null() || len == 0 {
        return None;
    }
    // SAFETY: as in `plane_mut`, read-only.
    Some((unsafe { std::slice::from_raw_parts(ptr, len) }, stride))
}

/// Appends an audio frame's samples to `fifo` (same format and channels).
pub(crate) fn fifo_write(fifo: &mut AVAudioFifo, frame: &AVFrame) -> bool {
    if frame.nb_samples <= 0 {
        return true;
    }
    // SAFETY: `extended_data` has one plane per channel (planar) or one
    // interleaved plane, each with `nb_samples` samples, matching the fifo's
    // format as arranged by the caller.
    unsafe { fifo.write(frame.extended_data as *const *mut u8, frame.nb_samples) }.is_ok()
}

/// Fills `frame` (allocated with `nb_samples` samples) from `fifo`.
pub(crate) fn fifo_read(fifo: &mut AVAudioFifo, frame: &mut AVFrame, nb_samples: i32) -> bool {
    // SAFETY: the frame's buffers were allocated for `nb_samples` samples of
    // the fifo's format and channel count.
    unsafe { fifo.read((*frame.as_mut_ptr()).extended_data, nb_samples) }
        .is_ok_and(|n| n == nb_samples)
}

/// Fills an allocated audio frame with silence (all its samples, every
/// channel).
pub(crate) fn set_silence(frame: &mut AVFrame, channels: i32) -> bool {
    let (n, format) = (frame.nb_samples, frame.format);
    if frame.channels != 0 && frame.channels != channels {
        return false;
    }
    // SAFETY: the frame's buffers were allocated (`alloc_buffer`) for its
    // `nb_samples` and sample `format`, and `channels` planes (its channel
    // layout's count, checked above when the frame states it).
    unsafe {
        ffi::av_samples_set_silence((*frame.as_mut_ptr()).extended_data, 0, n, channels, format)
            >= 0
    }
}

/// Keeps FFmpeg's own logging (x264 statistics and the like) to errors; our
/// callers log through `tracing`.
pub(crate) fn quiet_ffmpeg_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: av_log_set_level only stores an int.
    ONCE.call_once(|| unsafe { ffi::av_log_set_level(ffi::AV_LOG_ERROR as i32) });
}
