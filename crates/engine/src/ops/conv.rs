//! 2-D convolution y = W ⋆ x (+ b) over NCHW images (square, each image a
//! row of C·H·W values), as one GEMM per image on its im2col matrix:
//! Y_i (C_out × P) = W (C_out × C_in·k²) · col(x_i) (C_in·k² × P), P the
//! output pixels, which is already the NCHW layout of the output image.
//! Backward: ∂L/∂col = Wᵀ·G_i, scattered back (col2im) into ∂L/∂x_i, and
//! ∂L/∂W = Σᵢ G_i·col(x_i)ᵀ (per example: G_i·col(x_i)ᵀ, whose Gram matrix is
//! formed from the per-example gradients themselves). A 1×1 convolution of
//! stride 1 reads x_i as its own im2col matrix. Images are split between the
//! product threads.

use ndarray::{Array1, Array2, ArrayView2, Axis, CowArray, Ix2};

use crate::kernels::to_f64;
use crate::ops::{Sink, Writer, array1};
use crate::pool::{self, product_threads};
use crate::{EngineError, Real, Result};

/// A convolution's kernel as a (C_out × C_in·k·k) matrix (PyTorch's
/// (out, in, k, k) layout, row-major) and its geometry.
#[derive(Clone, Debug)]
pub(crate) struct Conv<T> {
    pub(crate) name: String,
    w: Array2<T>,
    /// Wᵀ row-major (C_in·k² × C_out), made when first needed after W is
    /// set: the left factor of ∂L/∂col, which gemm multiplies faster
    /// untransposed.
    wt: std::sync::OnceLock<Array2<T>>,
    b: Option<Array1<T>>,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

/// One shift (ky, kx) of a same-size convolution ([`Conv::shift`]).
struct Shift {
    /// Output rows whose input row lies in the image.
    rows: std::ops::Range<usize>,
    /// Output columns, in those rows, whose input column lies outside.
    outside: std::ops::Range<usize>,
    /// Positions of the output image copied in one run from the input…
    run: std::ops::Range<usize>,
    /// …starting at this position of the input image.
    source: usize,
}

impl Shift {
    /// The columns outside the image, in the rows inside it, set to 0.
    fn zero_outside<T: Real>(&self, row: &mut [T], h: usize) {
        for oy in self.rows.clone() {
            row[oy * h + self.outside.start..oy * h + self.outside.end].fill(T::zero());
        }
    }
}

/// The sizes of one image in and out.
#[derive(Clone, Copy, Debug)]
struct Shape {
    h: usize,
    ho: usize,
}

impl<T: Real> Conv<T> {
    /// The engine's copy of a nets convolution.
    pub(crate) fn from_layer(name: String, c: &gradscope_nets::Conv2d) -> Result<Self> {
        let t = c.weight().as_tensor();
        let (c_out, c_in, k, k2) = t.dims4()?;
        if k != k2 {
            return Err(EngineError::Input(format!(
                "`{name}`: square kernels only, got {k}×{k2}"
            )));
        }
        let w = Array2::from_shape_vec((c_out, c_in * k * k), T::from_tensor(t)?)
            .expect("shape matches");
        Ok(Conv {
            name,
            wt: std::sync::OnceLock::new(),
            w,
            b: c.bias().map(|b| array1(b.as_tensor())).transpose()?,
            c_in,
            c_out,
            k,
            stride: c.stride(),
            pad: c.padding(),
        })
    }

    /// Whether the output has the input's shape (stride 1, as many
    /// channels out as in).
    pub(crate) fn keeps_shape(&self) -> bool {
        self.stride == 1 && self.c_in == self.c_out && 2 * self.pad + 1 == self.k
    }

    /// The image size from a row of C_in·H·W values (square images).
    fn shape(&self, cols: usize) -> Shape {
        let hw = cols / self.c_in;
        let h = (hw as f64).sqrt().round() as usize;
        assert_eq!(
            (self.c_in * h * h, h > 0),
            (cols, true),
            "`{}`: rows of {cols} values are not {} square channels",
            self.name,
            self.c_in
        );
        Shape {
            h,
            ho: (h + 2 * self.pad - self.k) / self.stride + 1,
        }
    }

    /// Rows of the im2col matrix (C_in·k·k).
    fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// Whether x_i is its own im2col matrix (a 1×1 convolution of stride 1).
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// The output columns ox whose input column ox·s + kx − pad lies in the
    /// image: a range, since the input column grows with ox.
    fn valid(&self, kx: usize, h: usize, ho: usize) -> std::ops::Range<usize> {
        let (s, pad) = (self.stride, self.pad);
        // ox·s + kx ≥ pad and ox·s + kx − pad ≤ h − 1.
        let lo = pad.saturating_sub(kx).div_ceil(s);
        let hi = if h + pad > kx {
            ((h + pad - kx - 1) / s + 1).min(ho)
        } else {
            0
        };
        lo..hi.max(lo)
    }

    /// col(x) into `col` (C_in·k² × P, row-major): col[(c, ky, kx), (oy, ox)]
    /// = x[c, oy·s + ky − pad, ox·s + kx − pad], 0 outside the image.
    /// Image i's block of a batch's im2col matrix goes to columns
    /// off..off + P of rows `ld` wide.
    fn im2col(&self, x: &[T], s: Shape, col: &mut [T], ld: usize, off: usize) {
        if self.same_size(s) {
            return self.im2col_same(x, s.h, col, ld, off);
        }
        self.im2col_rows(x, s, col, ld, off)
    }

    /// [`im2col`](Self::im2col) one image row at a time, for any stride.
    fn im2col_rows(&self, x: &[T], s: Shape, col: &mut [T], ld: usize, off: usize) {
        let (h, ho, k, st) = (s.h, s.ho, self.k, self.stride);
        let p = ho * ho;
        for c in 0..self.c_in {
            let img = &x[c * h * h..(c + 1) * h * h];
            for ky in 0..k {
                for kx in 0..k {
                    let r = (c * k + ky) * k + kx;
                    let row = &mut col[r * ld + off..r * ld + off + p];
                    let ox = self.valid(kx, h, ho);
                    // The first valid output column reads input column x0.
                    let x0 = ox.start * st + kx - self.pad;
                    for oy in 0..ho {
                        let dst = &mut row[oy * ho..(oy + 1) * ho];
                        let iy = (oy * st + ky) as isize - self.pad as isize;
                        if iy < 0 || iy >= h as isize || ox.is_empty() {
                            dst.fill(T::zero());
                            continue;
                        }
                        let src = &img[iy as usize * h..(iy as usize + 1) * h];
                        dst[..ox.start].fill(T::zero());
                        dst[ox.end..].fill(T::zero());
                        let out = &mut dst[ox.clone()];
                        if st == 1 {
                            out.copy_from_slice(&src[x0..x0 + out.len()]);
                        } else {
                            for (d, &v) in out.iter_mut().zip(src[x0..].iter().step_by(st)) {
                                *d = v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether the output image has the input's size (stride 1, padding
    /// (k − 1)/2): each im2col row is then the image shifted by (ky − pad)
    /// rows and (kx − pad) columns, with zeros where the shift leaves it.
    fn same_size(&self, s: Shape) -> bool {
        self.stride == 1 && s.ho == s.h
    }

    /// For one shift (ky, kx) of a same-size convolution: the output rows
    /// whose input row lies in the image, the output columns to zero in
    /// them (whose input column lies outside, at most `pad` on one side),
    /// and the one run of positions col[i] = x[i + d] copied whole (d the
    /// flat offset of the shift; the wrapped columns in it are zeroed after).
    fn shift(&self, h: usize, ky: usize, kx: usize) -> Shift {
        let (dy, dx) = (
            ky as isize - self.pad as isize,
            kx as isize - self.pad as isize,
        );
        // Input row oy + dy in 0..h; empty (at 0 or h) when the shift leaves
        // an image smaller than the kernel.
        let start = ((-dy).max(0) as usize).min(h);
        let rows = start..((h as isize - dy).clamp(0, h as isize) as usize).max(start);
        let outside = if dx < 0 {
            0..(-dx as usize).min(h)
        } else {
            h.saturating_sub(dx as usize)..h
        };
        let (d, p) = (dy * h as isize + dx, (h * h) as isize);
        // Positions whose source falls before or after the image are wrapped
        // columns, zeroed with the others.
        let (lo, hi) = if rows.is_empty() {
            (0, 0)
        } else {
            let lo = (rows.start * h).max((-d).max(0) as usize);
            (lo, (rows.end * h).min((p - d).max(0) as usize))
        };
        // A shift that leaves an image smaller than the kernel copies nothing.
        let (run, source) = if hi > lo {
            (lo..hi, (lo as isize + d) as usize)
        } else {
            (0..0, 0)
        };
        Shift {
            rows,
            outside,
            run,
            source,
        }
    }

    /// [`im2col`](Self::im2col) of a same-size convolution: one copy of
    /// the shifted image per row of col, then the columns the shift wrapped
    /// round set to 0 (instead of a copy per image row).
    fn im2col_same(&self, x: &[T], h: usize, col: &mut [T], ld: usize, off: usize) {
        let (k, p) = (self.k, h * h);
        for c in 0..self.c_in {
            let img = &x[c * p..(c + 1) * p];
            for ky in 0..k {
                for kx in 0..k {
                    let r = (c * k + ky) * k + kx;
                    let row = &mut col[r * ld + off..r * ld + off + p];
                    let s = self.shift(h, ky, kx);
                    row[..s.rows.start * h].fill(T::zero());
                    row[s.rows.end * h..].fill(T::zero());
                    row[s.run.clone()].copy_from_slice(&img[s.source..s.source + s.run.len()]);
                    s.zero_outside(row, h);
                }
            }
        }
    }

    /// [`col2im`](Self::col2im) of a same-size convolution: the wrapped
    /// columns of each row of dcol set to 0, then one shifted sum per row.
    /// Adding those zeros leaves dx's bits as they were (dx starts at +0 and
    /// never holds −0), so the sums are those of the per-image-row loop.
    fn col2im_same(&self, dcol: &mut [T], ld: usize, off: usize, h: usize, dx: &mut [T]) {
        let (k, p) = (self.k, h * h);
        dx.fill(T::zero());
        for c in 0..self.c_in {
            let img = &mut dx[c * p..(c + 1) * p];
            for ky in 0..k {
                for kx in 0..k {
                    let r = (c * k + ky) * k + kx;
                    let row = &mut dcol[r * ld + off..r * ld + off + p];
                    let s = self.shift(h, ky, kx);
                    s.zero_outside(row, h);
                    let dst = &mut img[s.source..s.source + s.run.len()];
                    for (t, &v) in dst.iter_mut().zip(&row[s.run]) {
                        *t += v;
                    }
                }
            }
        }
    }

    /// The adjoint of [`im2col`](Self::im2col): dx[c, iy, ix] = Σ of
    /// dcol over the positions that read x[c, iy, ix].
    fn col2im(&self, dcol: &mut [T], ld: usize, off: usize, s: Shape, dx: &mut [T]) {
        if self.same_size(s) {
            return self.col2im_same(dcol, ld, off, s.h, dx);
        }
        self.col2im_rows(dcol, ld, off, s, dx)
    }

    /// [`col2im`](Self::col2im) one image row at a time, for any stride.
    fn col2im_rows(&self, dcol: &[T], ld: usize, off: usize, s: Shape, dx: &mut [T]) {
        let (h, ho, k, st) = (s.h, s.ho, self.k, self.stride);
        let p = ho * ho;
        dx.fill(T::zero());
        for c in 0..self.c_in {
            let img = &mut dx[c * h * h..(c + 1) * h * h];
            for ky in 0..k {
                for kx in 0..k {
                    let r = (c * k + ky) * k + kx;
                    let row = &dcol[r * ld + off..r * ld + off + p];
                    let ox = self.valid(kx, h, ho);
                    if ox.is_empty() {
                        continue;
                    }
                    let x0 = ox.start * st + kx - self.pad;
                    for oy in 0..ho {
                        let iy = (oy * st + ky) as isize - self.pad as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let dst = &mut img[iy as usize * h..(iy as usize + 1) * h];
                        let src = &row[oy * ho + ox.start..oy * ho + ox.end];
                        if st == 1 {
                            for (d, &v) in dst[x0..x0 + src.len()].iter_mut().zip(src) {
                                *d += v;
                            }
                        } else {
                            for (d, &v) in dst[x0..].iter_mut().step_by(st).zip(src) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Images per GEMM: enough columns (b·P ≥ [`GROUP_COLUMNS`]) that the
    /// kernels run near their peak even where an image has few pixels.
    fn group(p: usize) -> usize {
        GROUP_COLUMNS.div_ceil(p.max(1)).max(1)
    }

    /// The im2col matrix of images lo..lo + b of x (rows `cols_in` wide),
    /// side by side: (C_in·k² × b·P).
    fn block_col(&self, xs: &[T], cols_in: usize, lo: usize, b: usize, s: Shape, col: &mut [T]) {
        let (p, kk) = (s.ho * s.ho, self.patch());
        let ld = b * p;
        for j in 0..b {
            let xi = &xs[(lo + j) * cols_in..(lo + j + 1) * cols_in];
            if self.pointwise() {
                for r in 0..kk {
                    col[r * ld + j * p..r * ld + (j + 1) * p]
                        .copy_from_slice(&xi[r * p..(r + 1) * p]);
                }
            } else {
                self.im2col(xi, s, col, ld, j * p);
            }
        }
    }

    /// Whether the forward GEMM writes its output channels-last, Yᵀ =
    /// col(x)ᵀ·Wᵀ (m·P × C_out), then transposed into the NCHW rows: gemm's
    /// tiles run along C's contiguous side, so few output channels (≤ 32)
    /// as the short side of a channels-last block run about 1.6× faster than
    /// as the rows of a (C_out × m·P) block; at 64 channels the latter wins
    /// (measured on the ResNet-20 shapes, f32).
    fn channels_last(&self) -> bool {
        self.c_out <= 32
    }

    /// W ⋆ x (+ b when `bias`): one GEMM per group of images.
    fn apply(&self, x: ArrayView2<T>, bias: bool) -> Array2<T> {
        let x = x.as_standard_layout();
        let (n, s) = (x.nrows(), self.shape(x.ncols()));
        let (p, kk, c_out) = (s.ho * s.ho, self.patch(), self.c_out);
        let mut y = Array2::<T>::uninit((n, c_out * p));
        let (xs, cols_in) = (x.as_slice().expect("row-major"), x.ncols());
        let y_ptr = y.as_mut_ptr() as usize;
        let b = bias.then_some(self.b.as_ref()).flatten();
        let group = Self::group(p);
        let channels_last = self.channels_last();
        for_images(n, |lo, hi| {
            let mut col = vec![T::zero(); kk * group.min(hi - lo) * p];
            let mut out = vec![T::zero(); c_out * group.min(hi - lo) * p];
            for a in (lo..hi).step_by(group) {
                let m = group.min(hi - a);
                let ld = m * p;
                self.block_col(xs, cols_in, a, m, s, &mut col);
                // SAFETY: W is (C_out × kk), col (kk × m·P), out (C_out × m·P
                // or, channels-last, m·P × C_out), all row-major and apart.
                unsafe {
                    if channels_last {
                        T::gemm_strided(
                            ld,
                            c_out,
                            kk,
                            (out.as_mut_ptr(), c_out as isize, 1),
                            (col.as_ptr(), 1, ld as isize),
                            (self.w.as_ptr(), 1, kk as isize),
                            false,
                        );
                    } else {
                        T::gemm_into(
                            c_out,
                            ld,
                            kk,
                            out.as_mut_ptr(),
                            (self.w.as_ptr(), kk as isize, 1),
                            (col.as_ptr(), ld as isize, 1),
                        );
                    }
                }
                for j in 0..m {
                    // SAFETY: row a + j of y is written by this part alone.
                    let yi = unsafe {
                        std::slice::from_raw_parts_mut(
                            (y_ptr as *mut T).add((a + j) * c_out * p),
                            c_out * p,
                        )
                    };
                    for (co, dst) in yi.chunks_exact_mut(p).enumerate() {
                        let add = b.map_or(T::zero(), |b| b[co]);
                        if channels_last {
                            let src = &out[j * p * c_out + co..];
                            for (d, v) in dst.iter_mut().zip(src.iter().step_by(c_out)) {
                                *d = *v;
                            }
                        } else {
                            dst.copy_from_slice(&out[co * ld + j * p..co * ld + (j + 1) * p]);
                        }
                        if b.is_some() {
                            dst.iter_mut().for_each(|v| *v += add);
                        }
                    }
                }
            }
        });
        // SAFETY: every row was written whole above (every channel's P values).
        unsafe { y.assume_init() }
    }

    /// y = W ⋆ x + b.
    pub(crate) fn forward(&self, x: ArrayView2<T>) -> Array2<T> {
        self.apply(x, true)
    }

    /// (h, t) ↦ (W ⋆ h + b, W ⋆ t).
    pub(crate) fn jvp(&self, h: Array2<T>, t: Array2<T>) -> (Array2<T>, Array2<T>) {
        (self.apply(h.view(), true), self.apply(t.view(), false))
    }

    /// ∂L/∂x from g = ∂L/∂y; with the input `x` kept, ∂L/∂W and ∂L/∂b and
    /// their per-example Gram matrix, as the sink asks. One GEMM per group
    /// of images for ∂L/∂x and for ∂L/∂W (per image for the Gram matrix).
    pub(crate) fn vjp(
        &self,
        x: Option<&Array2<T>>,
        cols_in: usize,
        g: CowArray<'_, T, Ix2>,
        sink: &mut Sink<T>,
    ) -> Array2<T> {
        let g = g.as_standard_layout().into_owned();
        let n = g.nrows();
        let (s, kk) = (self.shape(cols_in), self.patch());
        let p = s.ho * s.ho;
        debug_assert_eq!(g.ncols(), self.c_out * p);
        // Every row is written whole below (col2im fills its image first).
        let mut dx = Array2::<T>::uninit((n, cols_in));
        let dx_ptr = dx.as_mut_ptr() as usize;
        let wt = self
            .wt
            .get_or_init(|| self.w.t().as_standard_layout().into_owned());
        let gs = g.as_slice().expect("row-major");
        let x = x.filter(|_| sink.want.params || sink.want.gram);
        let per_example = sink.want.gram;
        let group = Self::group(p);
        // ∂L/∂W per example (gram) or per part (summed after), as ∂L/∂Wᵀ
        // (kk × C_out) rows: gemm runs that layout 1.5–2.7× faster (its tiles
        // along C's contiguous side, the short C_out); transposed below.
        let parts: Vec<Array2<T>> = for_images_map(n, |lo, hi| {
            let most = group.min(hi - lo);
            let mut gblk = vec![T::zero(); if most > 1 { self.c_out * most * p } else { 0 }];
            let mut dcol = vec![T::zero(); kk * most * p];
            let mut col = vec![T::zero(); if x.is_some() { kk * most * p } else { 0 }];
            let rows = if per_example { hi - lo } else { 1 };
            let mut dwt = Array2::<T>::zeros((if x.is_some() { rows } else { 0 }, kk * self.c_out));
            for a in (lo..hi).step_by(group) {
                let m = group.min(hi - a);
                let ld = m * p;
                // G for the group side by side: (C_out × m·P); one image's G
                // is its own row of g.
                let g_blk = if m == 1 {
                    gs[a * self.c_out * p..].as_ptr()
                } else {
                    for j in 0..m {
                        let gi = &gs[(a + j) * self.c_out * p..(a + j + 1) * self.c_out * p];
                        for (co, src) in gi.chunks_exact(p).enumerate() {
                            gblk[co * ld + j * p..co * ld + (j + 1) * p].copy_from_slice(src);
                        }
                    }
                    gblk.as_ptr()
                };
                // SAFETY: Wᵀ is the (kk × C_out) view of W, G (C_out × m·P),
                // dcol (kk × m·P), all apart.
                unsafe {
                    T::gemm_into(
                        kk,
                        ld,
                        self.c_out,
                        dcol.as_mut_ptr(),
                        (wt.as_ptr(), self.c_out as isize, 1),
                        (g_blk, ld as isize, 1),
                    );
                }
                for j in 0..m {
                    // SAFETY: row a + j of dx is written by this part alone.
                    let dxi = unsafe {
                        std::slice::from_raw_parts_mut(
                            (dx_ptr as *mut T).add((a + j) * cols_in),
                            cols_in,
                        )
                    };
                    if self.pointwise() {
                        for (r, dst) in dxi.chunks_exact_mut(p).enumerate() {
                            dst.copy_from_slice(&dcol[r * ld + j * p..r * ld + (j + 1) * p]);
                        }
                    } else {
                        self.col2im(&mut dcol, ld, j * p, s, dxi);
                    }
                }
                let Some(xa) = x else { continue };
                self.block_col(
                    xa.as_slice().expect("row-major"),
                    cols_in,
                    a,
                    m,
                    s,
                    &mut col,
                );
                // SAFETY: each dst is a (kk × C_out) row-major block; a slice
                // of col is (kk × P or m·P) with rows ld apart, and the
                // matching columns of G, transposed, (P or m·P × C_out).
                unsafe {
                    let c_out = self.c_out as isize;
                    if per_example {
                        for j in 0..m {
                            T::gemm_strided(
                                kk,
                                self.c_out,
                                p,
                                (dwt.row_mut(a + j - lo).as_mut_ptr(), c_out, 1),
                                (col.as_ptr().add(j * p), ld as isize, 1),
                                (g_blk.add(j * p), 1, ld as isize),
                                true,
                            );
                        }
                    } else {
                        T::gemm_strided(
                            kk,
                            self.c_out,
                            ld,
                            (dwt.row_mut(0).as_mut_ptr(), c_out, 1),
                            (col.as_ptr(), ld as isize, 1),
                            (g_blk, 1, ld as isize),
                            true,
                        );
                    }
                }
            }
            // Each row ∂L/∂Wᵀ (kk × C_out) back to ∂L/∂W (C_out × kk).
            let mut dw = Array2::<T>::zeros(dwt.dim());
            for (d, t) in dw.rows_mut().into_iter().zip(dwt.rows()) {
                let t = t
                    .into_shape_with_order((kk, self.c_out))
                    .expect("kk × C_out");
                d.into_shape_with_order((self.c_out, kk))
                    .expect("C_out × kk")
                    .assign(&t.t());
            }
            dw
        });
        if x.is_some() {
            let (dw, db) = if per_example {
                let d = ndarray::concatenate(
                    Axis(0),
                    &parts.iter().map(|a| a.view()).collect::<Vec<_>>(),
                )
                .expect("same widths");
                let db = self
                    .b
                    .as_ref()
                    .map(|_| per_example_bias(gs, n, self.c_out, p));
                let mut gram = to_f64(&d).dot(&to_f64(&d).t());
                if let Some(db) = &db {
                    let db = to_f64(db);
                    gram = gram + db.dot(&db.t());
                }
                sink.gram.push((self.name.clone(), gram));
                (d.sum_axis(Axis(0)), db.map(|b| b.sum_axis(Axis(0))))
            } else {
                let mut total = Array1::<T>::zeros(self.c_out * kk);
                for part in &parts {
                    total += &part.row(0);
                }
                let db = self
                    .b
                    .as_ref()
                    .map(|_| per_example_bias(gs, n, self.c_out, p).sum_axis(Axis(0)));
                (total, db)
            };
            if sink.want.params {
                if let Some(db) = db {
                    sink.params
                        .push((format!("{}.bias", self.name), db.to_vec()));
                }
                sink.params
                    .push((format!("{}.weight", self.name), dw.to_vec()));
            }
        }
        // SAFETY: every row was written whole above.
        unsafe { dx.assume_init() }
    }

    /// The kernel (and bias) as (name, values).
    pub(crate) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        // The caller may change W through the slice.
        self.wt.take();
        out.push((
            format!("{}.weight", self.name),
            self.w.as_slice_mut().expect("row-major"),
        ));
        if let Some(b) = &mut self.b {
            out.push((
                format!("{}.bias", self.name),
                b.as_slice_mut().expect("contiguous"),
            ));
        }
    }

    /// [`params_mut`](Self::params_mut), read-only.
    pub(crate) fn params<'a>(&'a self, out: &mut Vec<(String, &'a [T])>) {
        out.push((
            format!("{}.weight", self.name),
            self.w.as_slice().expect("row-major"),
        ));
        if let Some(b) = &self.b {
            out.push((
                format!("{}.bias", self.name),
                b.as_slice().expect("contiguous"),
            ));
        }
    }

    /// Write the kernel (and bias) back into the net's variables.
    pub(crate) fn write(&self, w: &Writer<'_>) -> Result<()> {
        w.set_as(
            &format!("{}.weight", self.name),
            self.w.as_slice().expect("row-major"),
        )?;
        if let Some(b) = &self.b {
            w.set1(&format!("{}.bias", self.name), b)?;
        }
        Ok(())
    }
}

/// Columns per GEMM (images × output pixels) the convolutions aim for:
/// wide enough for gemm's tiles, small enough that the im2col block and
/// its gradient stay in cache.
const GROUP_COLUMNS: usize = 256;

/// Per example and output channel, Σ over pixels of g: the bias's gradient.
fn per_example_bias<T: Real>(g: &[T], n: usize, c_out: usize, p: usize) -> Array2<T> {
    Array2::from_shape_fn((n, c_out), |(i, c)| {
        g[(i * c_out + c) * p..(i * c_out + c + 1) * p]
            .iter()
            .copied()
            .sum()
    })
}

/// `f(lo, hi)` on blocks of the images 0..n, split between the product threads.
fn for_images(n: usize, f: impl Fn(usize, usize) + Sync) {
    let _ = for_images_map(n, f);
}

/// `f(lo, hi)` on blocks of the images 0..n, one result per block, in order.
fn for_images_map<R: Send>(n: usize, f: impl Fn(usize, usize) -> R + Sync) -> Vec<R> {
    let threads = product_threads().min(n.max(1));
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let blocks = n.div_ceil(chunk).max(1);
    pool::map(blocks, |b| f(b * chunk, ((b + 1) * chunk).min(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A same-size convolution of `c_in` channels and kernel k (no weights
    /// needed: only the geometry is used).
    fn geometry(c_in: usize, k: usize) -> Conv<f64> {
        Conv {
            name: "c".into(),
            w: Array2::zeros((1, c_in * k * k)),
            wt: std::sync::OnceLock::new(),
            b: None,
            c_in,
            c_out: 1,
            k,
            stride: 1,
            pad: (k - 1) / 2,
        }
    }

    /// The shifted-copy im2col and col2im give the bits of the row-by-row
    /// loop for every image size, down to images smaller than the kernel
    /// (where some shifts leave the image entirely).
    #[test]
    fn same_size_shifts_match_the_row_loop_on_every_small_image() {
        for k in [1, 3, 5, 7] {
            for h in 1..=9 {
                let conv = geometry(2, k);
                let s = conv.shape(2 * h * h);
                assert!(conv.same_size(s));
                let (rows, p) = (conv.patch(), h * h);
                // Columns of two images side by side, the second at off = p.
                let ld = 2 * p;
                let x: Vec<f64> = (0..2 * p).map(|i| 1.0 + i as f64).collect();
                let (mut fast, mut slow) = (vec![f64::NAN; rows * ld], vec![f64::NAN; rows * ld]);
                conv.im2col(&x, s, &mut fast, ld, p);
                conv.im2col_rows(&x, s, &mut slow, ld, p);
                let block = |m: &[f64]| -> Vec<f64> {
                    (0..rows)
                        .flat_map(|r| m[r * ld + p..r * ld + 2 * p].to_vec())
                        .collect()
                };
                assert_eq!(block(&fast), block(&slow), "im2col, k = {k}, h = {h}");
                // col2im of a dcol whose wrapped columns hold non-zeros (the
                // shifted path must zero them, not add them).
                let dcol: Vec<f64> = (0..rows * ld).map(|i| (i % 13) as f64 - 6.0).collect();
                let (mut dfast, mut dslow) = (vec![f64::NAN; 2 * p], vec![f64::NAN; 2 * p]);
                conv.col2im(&mut dcol.clone(), ld, p, s, &mut dfast);
                conv.col2im_rows(&dcol, ld, p, s, &mut dslow);
                assert_eq!(dfast, dslow, "col2im, k = {k}, h = {h}");
            }
        }
    }
}
