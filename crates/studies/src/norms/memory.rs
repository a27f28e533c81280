//! What a norms run holds in memory: the shared weight draws, which grow
//! with seeds × depth × width², and per thread one net in flight.

use gradscope_nets::{Activation, Arch, NetParams, Precision, WeightInit};

use super::{NormsConfig, net_params};
use crate::study::GIB;

impl NormsConfig {
    /// Peak memory of a run on `threads` threads, GiB: the Gaussian draws
    /// shared by the cells ([`Self::draws_estimate_gib`]), plus per thread
    /// the larger of a net in flight ([`Self::net_estimate_gib`]) and a
    /// Jacobian chain (a few W × W matrices in f64).
    pub fn memory_estimate_gib(&self, threads: usize) -> f64 {
        let p = &self.params;
        let jacobian = if self.on("jacobian") {
            (4 * p.jacobian_width * p.jacobian_width * 8) as f64 / GIB
        } else {
            0.0
        };
        let images = self
            .images
            .as_ref()
            .map_or(0.0, |im| im.working_bytes(&self.params) / GIB);
        self.draws_estimate_gib()
            + threads.max(1) as f64 * self.net_estimate_gib().max(jacobian).max(images)
    }

    /// The draw cache, GiB: one f64 per weight of every net seed of the
    /// layers part (each arch) and of the phase part (plain and residual),
    /// kept for the whole run. An upper bound: tensors two archs name alike
    /// share their draws.
    pub fn draws_estimate_gib(&self) -> f64 {
        let p = &self.params;
        let count = |arch: Arch| self.net(arch).parameter_count();
        let mut weights = 0u64;
        if self.on("layers") {
            weights += p.seeds as u64 * p.archs.iter().map(|&a| count(a)).sum::<u64>();
        }
        if self.on("phase") {
            weights += p.seeds.min(4) as u64 * (count(Arch::PLAIN) + count(Arch::RESNET));
        }
        (weights * 8) as f64 / GIB
    }

    /// One net of the layers or phase part in flight, GiB: its weights and
    /// their gradients in the dtype, the f64 draws it is built from, and
    /// about 8 saved batch × width tensors per layer (pre-activation, norm
    /// intermediates, gradient), as the shattered study counts them.
    pub fn net_estimate_gib(&self) -> f64 {
        let p = &self.params;
        if !(self.on("layers") || self.on("phase")) {
            return 0.0;
        }
        let bytes = if p.dtype == Precision::F32 { 4.0 } else { 8.0 };
        let archs = p.archs.iter().copied().chain([Arch::PLAIN, Arch::RESNET]);
        archs
            .map(|arch| {
                let n = self.net(arch);
                let params = n.parameter_count() as f64;
                let layers = (n.depth * arch.layers_per_block() + 2) as f64;
                let saved = 8.0 * layers * (p.batch * p.width.max(p.input_dim)) as f64;
                (2.0 * params + saved) * bytes + 8.0 * params
            })
            .fold(0.0, f64::max)
            / GIB
    }

    /// Whether `part` runs.
    pub(super) fn on(&self, part: &str) -> bool {
        self.params.parts.iter().any(|x| x == part)
    }

    /// The net of `arch` at the study's sizes (its parameter count does not
    /// depend on the activation or the init).
    fn net(&self, arch: Arch) -> NetParams {
        net_params(&self.params, arch, Activation::Relu, WeightInit::He)
    }
}
