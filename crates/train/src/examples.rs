//! Labelled examples in memory, and mini-batches in a fixed-seed order.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::{Result, TrainError};

/// N labelled examples of one shape (e.g. `[64]` for flattened 8×8 digits,
/// `[3, 32, 32]` for CIFAR images), stored row-major as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Examples {
    x: Vec<f32>,
    shape: Vec<usize>,
    y: Vec<u32>,
    classes: usize,
}

impl Examples {
    /// Examples from flat features `x` of `shape` each, labels `y` in 0..classes.
    pub fn new(x: Vec<f32>, shape: Vec<usize>, y: Vec<u32>, classes: usize) -> Result<Self> {
        let per: usize = shape.iter().product();
        if per == 0 || shape.is_empty() {
            return Err(TrainError::Data(format!(
                "example shape {shape:?} is empty"
            )));
        }
        if x.len() != per * y.len() {
            return Err(TrainError::Data(format!(
                "{} values for {} examples of shape {shape:?}",
                x.len(),
                y.len()
            )));
        }
        if let Some(bad) = y.iter().find(|&&l| l as usize >= classes) {
            return Err(TrainError::Data(format!(
                "label {bad} with {classes} classes"
            )));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(TrainError::Data("inputs hold NaN or inf".into()));
        }
        Ok(Examples {
            x,
            shape,
            y,
            classes,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Shape of one example.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Class of each example.
    pub fn labels(&self) -> &[u32] {
        &self.y
    }

    /// The values of example `i`.
    pub fn example(&self, i: usize) -> &[f32] {
        let per = self.x.len() / self.y.len().max(1);
        &self.x[i * per..(i + 1) * per]
    }

    /// The examples at `idx` flattened, one per row, in the float type `T`,
    /// and their labels.
    pub fn matrix<T: num_traits::NumCast>(&self, idx: &[usize]) -> (ndarray::Array2<T>, Vec<u32>) {
        let d = self.shape.iter().product::<usize>();
        let x = ndarray::Array2::from_shape_fn((idx.len(), d), |(r, c)| {
            T::from(self.example(idx[r])[c]).expect("an f32 converts")
        });
        (x, idx.iter().map(|&i| self.y[i]).collect())
    }

    /// The examples at `idx` as a (batch, shape…) tensor, and their labels.
    pub fn batch(&self, idx: &[usize], dtype: DType) -> Result<(Tensor, Vec<u32>)> {
        let mut data = Vec::with_capacity(idx.len() * self.x.len() / self.len().max(1));
        for &i in idx {
            data.extend_from_slice(self.example(i));
        }
        let mut dims = vec![idx.len()];
        dims.extend_from_slice(&self.shape);
        let t = Tensor::from_vec(data, dims, &Device::Cpu)?.to_dtype(dtype)?;
        Ok((t, idx.iter().map(|&i| self.y[i]).collect()))
    }

    /// The same examples viewed with another shape of equal size (e.g. images
    /// (1, 8, 8) flattened to (64) for an MLP).
    pub fn reshaped(&self, shape: Vec<usize>) -> Result<Examples> {
        if shape.iter().product::<usize>() != self.shape.iter().product::<usize>() {
            return Err(TrainError::Data(format!(
                "cannot view examples of shape {:?} as {shape:?}",
                self.shape
            )));
        }
        Ok(Examples {
            shape,
            ..self.clone()
        })
    }

    /// A subset, in the given order.
    pub fn select(&self, idx: &[usize]) -> Examples {
        let mut x = Vec::new();
        for &i in idx {
            x.extend_from_slice(self.example(i));
        }
        Examples {
            x,
            shape: self.shape.clone(),
            y: idx.iter().map(|&i| self.y[i]).collect(),
            classes: self.classes,
        }
    }
}

/// The mini-batches of one epoch: a permutation drawn from `seed`, cut into
/// batches of `size` (the last one may be smaller).
pub fn epoch_batches(n: usize, size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order.chunks(size.max(1)).map(|c| c.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_example_once_in_a_seeded_order() {
        let b = epoch_batches(10, 4, 3);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(b, epoch_batches(10, 4, 3));
        assert_ne!(b, epoch_batches(10, 4, 4));
    }

    #[test]
    fn bad_examples_are_errors() {
        assert!(Examples::new(vec![0.0; 5], vec![2], vec![0, 1], 2).is_err());
        assert!(Examples::new(vec![0.0; 4], vec![2], vec![0, 2], 2).is_err());
        assert!(Examples::new(vec![f32::NAN; 4], vec![2], vec![0, 1], 2).is_err());
        let e = Examples::new((0..6).map(|v| v as f32).collect(), vec![3], vec![1, 0], 2).unwrap();
        let (t, y) = e.batch(&[1, 0], DType::F64).unwrap();
        assert_eq!(
            t.to_vec2::<f64>().unwrap(),
            vec![vec![3.0, 4.0, 5.0], vec![0.0, 1.0, 2.0]]
        );
        assert_eq!(y, vec![0, 1]);
    }
}
