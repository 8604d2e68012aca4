//! The burnt-in logo: a PNG decoded once with FFmpeg, scaled to the source
//! height, converted to YUV with its alpha, and blended into the decoded
//! source picture (so every rung shows it at the same relative size).

use rsmpeg::avcodec::{AVCodec, AVCodecContext};
use rsmpeg::avutil::AVFrame;
use rsmpeg::ffi;
use rsmpeg::swscale::SwsContext;

use super::raw;
use crate::ladder::{Corner, LogoConfig};

struct Prepared {
    /// For the source size.
    src: (i32, i32),
    x: usize,
    y: usize,
    w: usize,
    h: usize,
    /// Row length of `luma`/`alpha` (the unclipped logo width).
    lw: usize,
    /// Luma and per-pixel weight (0..=256).
    luma: Vec<u8>,
    alpha: Vec<u16>,
    /// Chroma (w/2 x h/2, rounded up) and weight.
    cb: Vec<u8>,
    cr: Vec<u8>,
    alpha_c: Vec<u16>,
}

pub(crate) struct Logo {
    config: LogoConfig,
    /// The decoded PNG in its own format.
    image: AVFrame,
    prepared: Option<Prepared>,
    warned: bool,
}

fn err(m: impl Into<String>) -> crate::Error {
    crate::Error::InvalidArgument(format!("logo: {}", m.into()))
}

impl Logo {
    pub(crate) fn decode(config: &LogoConfig) -> crate::Result<Logo> {
        let codec = AVCodec::find_decoder(ffi::AVCodecID_AV_CODEC_ID_PNG)
            .ok_or_else(|| err("no PNG decoder"))?;
        let mut ctx = AVCodecContext::new(&codec);
        ctx.open(None).map_err(|e| err(e.to_string()))?;
        let pkt = raw::packet_from(&config.png).ok_or_else(|| err("too large"))?;
        ctx.send_packet(Some(&pkt))
            .map_err(|e| err(format!("not a PNG: {e}")))?;
        let _ = ctx.send_packet(None);
        let image = ctx
            .receive_frame()
            .map_err(|e| err(format!("not a PNG: {e}")))?;
        if image.width <= 0 || image.height <= 0 {
            return Err(err("empty image"));
        }
        Ok(Logo {
            config: config.clone(),
            image,
            prepared: None,
            warned: false,
        })
    }

    fn prepare(&self, sw: i32, sh: i32) -> Option<Prepared> {
        let c = &self.config;
        let ref_h = if c.height > 0 {
            c.height as i64
        } else {
            i64::from(self.image.height)
        };
        let h = (ref_h * i64::from(sh) / 1080).clamp(2, i64::from(sh)) as i32 & !1;
        let w = (i64::from(self.image.width) * i64::from(h) / i64::from(self.image.height))
            .clamp(2, i64::from(sw)) as i32
            & !1;
        let mut sws = SwsContext::get_context(
            self.image.width,
            self.image.height,
            self.image.format,
            w,
            h,
            ffi::AVPixelFormat_AV_PIX_FMT_RGBA,
            ffi::SWS_BICUBIC,
        )?;
        let mut rgba = AVFrame::new();
        rgba.set_width(w);
        rgba.set_height(h);
        rgba.set_format(ffi::AVPixelFormat_AV_PIX_FMT_RGBA);
        rgba.alloc_buffer().ok()?;
        sws.scale_frame(&self.image, 0, self.image.height, &mut rgba)
            .ok()?;
        let (wu, hu) = (w as usize, h as usize);
        let (px, stride) = raw::plane(&rgba, 0, hu)?;
        let opacity = u32::from(c.opacity.min(100));
        let mut luma = vec![0u8; wu * hu];
        let mut alpha = vec![0u16; wu * hu];
        let (cw, ch) = (wu.div_ceil(2), hu.div_ceil(2));
        let mut acc = vec![(0u32, 0u32, 0u32, 0u32); cw * ch];
        for yy in 0..hu {
            for xx in 0..wu {
                let o = yy * stride + xx * 4;
                let (r, g, b, a) = match px.get(o..o + 4) {
                    Some(p) => (
                        i32::from(p[0]),
                        i32::from(p[1]),
                        i32::from(p[2]),
                        u32::from(p[3]),
                    ),
                    None => (0, 0, 0, 0),
                };
                // BT.601 limited range.
                let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
                let u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
                let v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
                let wgt = a * opacity * 256 / (255 * 100);
                luma[yy * wu + xx] = y.clamp(0, 255) as u8;
                alpha[yy * wu + xx] = wgt as u16;
                let e = &mut acc[(yy / 2) * cw + xx / 2];
                e.0 += u.clamp(0, 255) as u32 * wgt;
                e.1 += v.clamp(0, 255) as u32 * wgt;
                e.2 += wgt;
                e.3 += 1;
            }
        }
        let mut cb = vec![128u8; cw * ch];
        let mut cr = vec![128u8; cw * ch];
        let mut alpha_c = vec![0u16; cw * ch];
        for (i, e) in acc.iter().enumerate() {
            if let (Some(u), Some(v)) = (e.0.checked_div(e.2), e.1.checked_div(e.2)) {
                cb[i] = u as u8;
                cr[i] = v as u8;
            }
            alpha_c[i] = (e.2 / e.3.max(1)) as u16;
        }
        let m = (i64::from(c.margin) * i64::from(sh) / 1080) as i32;
        let x = match c.corner {
            Corner::TopLeft | Corner::BottomLeft => m,
            Corner::TopRight | Corner::BottomRight => sw - w - m,
        }
        .max(0)
            & !1;
        let y = match c.corner {
            Corner::TopLeft | Corner::TopRight => m,
            Corner::BottomLeft | Corner::BottomRight => sh - h - m,
        }
        .max(0)
            & !1;
        Some(Prepared {
            src: (sw, sh),
            x: x as usize,
            y: y as usize,
            w: wu.min((sw - x) as usize),
            h: hu.min((sh - y) as usize),
            lw: wu,
            luma,
            alpha,
            cb,
            cr,
            alpha_c,
        })
    }

    /// Blends the logo into a decoded picture (YUV 4:2:0 only).
    pub(crate) fn draw(&mut self, frame: &mut AVFrame) {
        let fmt = frame.format;
        if fmt != ffi::AVPixelFormat_AV_PIX_FMT_YUV420P
            && fmt != ffi::AVPixelFormat_AV_PIX_FMT_YUVJ420P
        {
            if !self.warned {
                self.warned = true;
                tracing::warn!(format = fmt, "logo: only 4:2:0 pictures get a logo");
            }
            return;
        }
        let size = (frame.width, frame.height);
        if self.prepared.as_ref().map(|p| p.src) != Some(size) {
            self.prepared = self.prepare(size.0, size.1);
        }
        let Some(p) = &self.prepared else {
            return;
        };
        if frame.make_writable().is_err() {
            return;
        }
        let rows = usize::try_from(size.1).unwrap_or(0);
        let lw = p.lw;
        if let Some((plane, stride)) = raw::plane_mut(frame, 0, rows) {
            for yy in 0..p.h {
                let row = (p.y + yy) * stride + p.x;
                let Some(dst) = plane.get_mut(row..row + p.w) else {
                    break;
                };
                for (xx, d) in dst.iter_mut().enumerate() {
                    let i = yy * lw + xx;
                    let a = u32::from(p.alpha[i]);
                    *d = ((u32::from(*d) * (256 - a) + u32::from(p.luma[i]) * a) >> 8) as u8;
                }
            }
        }
        let cw = lw.div_ceil(2);
        let (cx, cy, cwn, chn) = (p.x / 2, p.y / 2, p.w.div_ceil(2), p.h.div_ceil(2));
        for (plane_idx, src) in [(1usize, &p.cb), (2, &p.cr)] {
            if let Some((plane, stride)) = raw::plane_mut(frame, plane_idx, rows.div_ceil(2)) {
                for yy in 0..chn {
                    let row = (cy + yy) * stride + cx;
                    let Some(dst) = plane.get_mut(row..row + cwn) else {
                        break;
                    };
                    for (xx, d) in dst.iter_mut().enumerate() {
                        let i = yy * cw + xx;
                        let (Some(&a), Some(&s)) = (p.alpha_c.get(i), src.get(i)) else {
                            continue;
                        };
                        let a = u32::from(a);
                        *d = ((u32::from(*d) * (256 - a) + u32::from(s) * a) >> 8) as u8;
                    }
                }
            }
        }
    }
}
