//! Dual numbers a + b·ε (ε² = 0): forward-mode derivatives carried through
//! every op of the engine, so that a reverse pass run on duals is
//! forward-over-reverse differentiation (Pearlmutter 1994): with each
//! parameter's tangent set to v, the gradient's tangent is H·v.
//!
//! Every method of [`Float`] applies its exact derivative rule to the
//! tangent; comparisons, classification (NaN, sign, finiteness) and
//! conversions to other types read the value alone, so the engine's branches
//! (ReLU's select, its mask, NaN marks) take the value's path.

use std::cmp::Ordering;
use std::ops::{
    Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, RemAssign, Sub, SubAssign,
};

use num_traits::{Float, FromPrimitive, Num, NumCast, One, ToPrimitive, Zero};

/// value + tangent·ε, laid out as two consecutive F (so a matrix of duals
/// is two interleaved matrices of F, which GEMM reads through strides).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Dual<F> {
    /// The value a.
    pub value: F,
    /// The tangent b: the derivative along the chosen direction.
    pub tangent: F,
}

impl<F: Float> Dual<F> {
    /// value + tangent·ε.
    pub fn new(value: F, tangent: F) -> Self {
        Dual { value, tangent }
    }

    /// A constant: tangent 0.
    pub fn constant(value: F) -> Self {
        Dual::new(value, F::zero())
    }

    /// f(a) + f'(a)·b·ε.
    fn chain(self, value: F, slope: F) -> Self {
        Dual::new(value, slope * self.tangent)
    }
}

impl<F: Float> PartialEq for Dual<F> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<F: Float> PartialOrd for Dual<F> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.value.partial_cmp(&other.value)
    }
}

impl<F: Float> Add for Dual<F> {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Dual::new(self.value + o.value, self.tangent + o.tangent)
    }
}

impl<F: Float> Sub for Dual<F> {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Dual::new(self.value - o.value, self.tangent - o.tangent)
    }
}

impl<F: Float> Mul for Dual<F> {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        Dual::new(
            self.value * o.value,
            self.tangent * o.value + self.value * o.tangent,
        )
    }
}

impl<F: Float> Div for Dual<F> {
    type Output = Self;
    fn div(self, o: Self) -> Self {
        let q = self.value / o.value;
        Dual::new(q, (self.tangent - q * o.tangent) / o.value)
    }
}

impl<F: Float> Rem for Dual<F> {
    type Output = Self;
    /// a − b·trunc(a/b), the quotient piecewise constant.
    fn rem(self, o: Self) -> Self {
        let k = (self.value / o.value).trunc();
        Dual::new(self.value % o.value, self.tangent - k * o.tangent)
    }
}

impl<F: Float> Neg for Dual<F> {
    type Output = Self;
    fn neg(self) -> Self {
        Dual::new(-self.value, -self.tangent)
    }
}

macro_rules! assign {
    ($trait:ident, $method:ident, $op:tt) => {
        impl<F: Float> $trait for Dual<F> {
            fn $method(&mut self, o: Self) {
                *self = *self $op o;
            }
        }
    };
}
assign!(AddAssign, add_assign, +);
assign!(SubAssign, sub_assign, -);
assign!(MulAssign, mul_assign, *);
assign!(DivAssign, div_assign, /);
assign!(RemAssign, rem_assign, %);

impl<F: Float> Zero for Dual<F> {
    fn zero() -> Self {
        Dual::constant(F::zero())
    }
    fn is_zero(&self) -> bool {
        self.value.is_zero()
    }
}

impl<F: Float> One for Dual<F> {
    fn one() -> Self {
        Dual::constant(F::one())
    }
}

impl<F: Float> Num for Dual<F> {
    type FromStrRadixErr = F::FromStrRadixErr;
    fn from_str_radix(s: &str, radix: u32) -> Result<Self, Self::FromStrRadixErr> {
        F::from_str_radix(s, radix).map(Dual::constant)
    }
}

impl<F: Float> ToPrimitive for Dual<F> {
    fn to_i64(&self) -> Option<i64> {
        self.value.to_i64()
    }
    fn to_u64(&self) -> Option<u64> {
        self.value.to_u64()
    }
    fn to_f32(&self) -> Option<f32> {
        self.value.to_f32()
    }
    fn to_f64(&self) -> Option<f64> {
        self.value.to_f64()
    }
}

impl<F: Float> NumCast for Dual<F> {
    fn from<N: ToPrimitive>(n: N) -> Option<Self> {
        <F as NumCast>::from(n).map(Dual::constant)
    }
}

impl<F: Float + FromPrimitive> FromPrimitive for Dual<F> {
    fn from_i64(n: i64) -> Option<Self> {
        F::from_i64(n).map(Dual::constant)
    }
    fn from_u64(n: u64) -> Option<Self> {
        F::from_u64(n).map(Dual::constant)
    }
    fn from_f32(n: f32) -> Option<Self> {
        F::from_f32(n).map(Dual::constant)
    }
    fn from_f64(n: f64) -> Option<Self> {
        F::from_f64(n).map(Dual::constant)
    }
}

impl<F: Float> std::iter::Sum for Dual<F> {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::zero(), |a, b| a + b)
    }
}

impl<'a, F: Float> std::iter::Sum<&'a Dual<F>> for Dual<F> {
    fn sum<I: Iterator<Item = &'a Self>>(iter: I) -> Self {
        iter.fold(Self::zero(), |a, b| a + *b)
    }
}

impl<F: Float + std::fmt::Display> std::fmt::Display for Dual<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} + {}ε", self.value, self.tangent)
    }
}

/// A constant of F (the value's constants have no tangent).
macro_rules! constants {
    ($($name:ident),*) => {
        $(fn $name() -> Self {
            Dual::constant(F::$name())
        })*
    };
}

/// Predicates of the value.
macro_rules! predicates {
    ($($name:ident),*) => {
        $(fn $name(self) -> bool {
            self.value.$name()
        })*
    };
}

/// Piecewise-constant functions: derivative 0.
macro_rules! steps {
    ($($name:ident),*) => {
        $(fn $name(self) -> Self {
            Dual::constant(self.value.$name())
        })*
    };
}

impl<F: Float> Float for Dual<F> {
    constants!(
        nan,
        infinity,
        neg_infinity,
        neg_zero,
        min_value,
        min_positive_value,
        max_value,
        epsilon
    );
    predicates!(
        is_nan,
        is_infinite,
        is_finite,
        is_normal,
        is_sign_positive,
        is_sign_negative
    );
    steps!(floor, ceil, round, trunc, signum);

    fn classify(self) -> std::num::FpCategory {
        self.value.classify()
    }
    fn fract(self) -> Self {
        Dual::new(self.value.fract(), self.tangent)
    }
    /// |a|' = sign(a) (+1 at +0).
    fn abs(self) -> Self {
        self.chain(self.value.abs(), self.value.signum())
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }
    fn recip(self) -> Self {
        let r = self.value.recip();
        self.chain(r, -r * r)
    }
    fn powi(self, n: i32) -> Self {
        if n == 0 {
            return Self::one();
        }
        let nf = F::from(n).expect("an i32 converts");
        self.chain(self.value.powi(n), nf * self.value.powi(n - 1))
    }
    /// d(aⁿ) = n·aⁿ⁻¹·da + aⁿ·ln a·dn (the second term only when n varies).
    fn powf(self, n: Self) -> Self {
        let p = self.value.powf(n.value);
        let mut t = n.value * self.value.powf(n.value - F::one()) * self.tangent;
        if n.tangent != F::zero() {
            t = t + p * self.value.ln() * n.tangent;
        }
        Dual::new(p, t)
    }
    fn sqrt(self) -> Self {
        let s = self.value.sqrt();
        self.chain(s, (s + s).recip())
    }
    fn exp(self) -> Self {
        let e = self.value.exp();
        self.chain(e, e)
    }
    fn exp2(self) -> Self {
        let e = self.value.exp2();
        self.chain(e, e * F::from(std::f64::consts::LN_2).expect("converts"))
    }
    fn ln(self) -> Self {
        self.chain(self.value.ln(), self.value.recip())
    }
    fn log(self, base: Self) -> Self {
        self.ln() / base.ln()
    }
    fn log2(self) -> Self {
        let ln2 = F::from(std::f64::consts::LN_2).expect("converts");
        self.chain(self.value.log2(), (self.value * ln2).recip())
    }
    fn log10(self) -> Self {
        let ln10 = F::from(std::f64::consts::LN_10).expect("converts");
        self.chain(self.value.log10(), (self.value * ln10).recip())
    }
    /// The larger by value (the other when one is NaN, as F::max), with its tangent.
    fn max(self, o: Self) -> Self {
        if self.value.is_nan() || o.value > self.value {
            o
        } else {
            self
        }
    }
    /// The smaller by value (the other when one is NaN, as F::min), with its tangent.
    fn min(self, o: Self) -> Self {
        if self.value.is_nan() || o.value < self.value {
            o
        } else {
            self
        }
    }
    #[allow(deprecated)]
    fn abs_sub(self, o: Self) -> Self {
        if self.value <= o.value {
            Self::zero()
        } else {
            self - o
        }
    }
    fn cbrt(self) -> Self {
        let c = self.value.cbrt();
        self.chain(c, (F::from(3.0).expect("converts") * c * c).recip())
    }
    fn hypot(self, o: Self) -> Self {
        let h = self.value.hypot(o.value);
        Dual::new(h, (self.value * self.tangent + o.value * o.tangent) / h)
    }
    fn sin(self) -> Self {
        self.chain(self.value.sin(), self.value.cos())
    }
    fn cos(self) -> Self {
        self.chain(self.value.cos(), -self.value.sin())
    }
    fn tan(self) -> Self {
        let t = self.value.tan();
        self.chain(t, F::one() + t * t)
    }
    fn asin(self) -> Self {
        let v = self.value;
        self.chain(v.asin(), (F::one() - v * v).sqrt().recip())
    }
    fn acos(self) -> Self {
        let v = self.value;
        self.chain(v.acos(), -(F::one() - v * v).sqrt().recip())
    }
    fn atan(self) -> Self {
        let v = self.value;
        self.chain(v.atan(), (F::one() + v * v).recip())
    }
    /// atan2(y, x)' = (x·dy − y·dx)/(x² + y²).
    fn atan2(self, x: Self) -> Self {
        let (y, xv) = (self.value, x.value);
        Dual::new(
            y.atan2(xv),
            (xv * self.tangent - y * x.tangent) / (xv * xv + y * y),
        )
    }
    fn sin_cos(self) -> (Self, Self) {
        (self.sin(), self.cos())
    }
    fn exp_m1(self) -> Self {
        self.chain(self.value.exp_m1(), self.value.exp())
    }
    fn ln_1p(self) -> Self {
        self.chain(self.value.ln_1p(), (F::one() + self.value).recip())
    }
    fn sinh(self) -> Self {
        self.chain(self.value.sinh(), self.value.cosh())
    }
    fn cosh(self) -> Self {
        self.chain(self.value.cosh(), self.value.sinh())
    }
    fn tanh(self) -> Self {
        let t = self.value.tanh();
        self.chain(t, F::one() - t * t)
    }
    fn asinh(self) -> Self {
        let v = self.value;
        self.chain(v.asinh(), (v * v + F::one()).sqrt().recip())
    }
    fn acosh(self) -> Self {
        let v = self.value;
        self.chain(v.acosh(), (v * v - F::one()).sqrt().recip())
    }
    fn atanh(self) -> Self {
        let v = self.value;
        self.chain(v.atanh(), (F::one() - v * v).recip())
    }
    fn integer_decode(self) -> (u64, i16, i8) {
        self.value.integer_decode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f'(a) by a central difference of f on the value alone.
    fn check(name: &str, f: impl Fn(Dual<f64>) -> Dual<f64>, a: f64) {
        let d = f(Dual::new(a, 1.0));
        let h = 1e-6;
        let fd = (f(Dual::constant(a + h)).value - f(Dual::constant(a - h)).value) / (2.0 * h);
        assert!(
            (d.tangent - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
            "{name}'({a}) = {} against {fd}",
            d.tangent
        );
    }

    #[test]
    fn every_derivative_rule_matches_a_central_difference() {
        let c = Dual::new(0.7, 0.0);
        type Rule = Box<dyn Fn(Dual<f64>) -> Dual<f64>>;
        let fs: Vec<(&str, Rule)> = vec![
            ("abs", Box::new(|x| x.abs())),
            ("recip", Box::new(|x| x.recip())),
            ("powi", Box::new(|x| x.powi(3))),
            ("powf", Box::new(|x| x.powf(x))),
            ("sqrt", Box::new(|x| x.sqrt())),
            ("exp", Box::new(|x| x.exp())),
            ("exp2", Box::new(|x| x.exp2())),
            ("ln", Box::new(|x| x.ln())),
            ("log", Box::new(|x| x.log(x + Dual::constant(2.0)))),
            ("log2", Box::new(|x| x.log2())),
            ("log10", Box::new(|x| x.log10())),
            ("cbrt", Box::new(|x| x.cbrt())),
            ("hypot", Box::new(move |x| x.hypot(x * c))),
            ("sin", Box::new(|x| x.sin())),
            ("cos", Box::new(|x| x.cos())),
            ("tan", Box::new(|x| x.tan())),
            ("asin", Box::new(|x| (x * Dual::constant(0.5)).asin())),
            ("acos", Box::new(|x| (x * Dual::constant(0.5)).acos())),
            ("atan", Box::new(|x| x.atan())),
            ("atan2", Box::new(move |x| x.atan2(x * x + c))),
            ("exp_m1", Box::new(|x| x.exp_m1())),
            ("ln_1p", Box::new(|x| x.ln_1p())),
            ("sinh", Box::new(|x| x.sinh())),
            ("cosh", Box::new(|x| x.cosh())),
            ("tanh", Box::new(|x| x.tanh())),
            ("asinh", Box::new(|x| x.asinh())),
            ("acosh", Box::new(|x| (x + Dual::constant(1.5)).acosh())),
            ("atanh", Box::new(|x| (x * Dual::constant(0.5)).atanh())),
            ("div", Box::new(move |x| c / (x + x * x))),
            (
                "rem",
                Box::new(move |x| (x * Dual::constant(5.0)) % (x + c)),
            ),
            ("mul_add", Box::new(move |x| x.mul_add(x, c))),
            ("max", Box::new(move |x| Float::max(x * x, c))),
            ("min", Box::new(move |x| Float::min(x * x, c))),
            ("fract", Box::new(|x| (x * Dual::constant(3.0)).fract())),
        ];
        for (name, f) in &fs {
            for a in [0.3, 1.1, 1.9] {
                check(name, f, a);
            }
        }
    }

    #[test]
    fn comparisons_and_predicates_read_the_value() {
        let a = Dual::new(1.0, -5.0);
        let b = Dual::new(1.0, 7.0);
        assert!(a == b && a <= b && a >= b);
        assert!(Dual::new(f64::NAN, 0.0).is_nan());
        assert!(!Dual::new(0.0, f64::NAN).is_nan());
        assert!(Dual::new(-0.0, 1.0).is_sign_negative());
        assert_eq!(Dual::<f64>::from_f64(2.5).unwrap().tangent, 0.0);
        assert_eq!(ToPrimitive::to_f64(&Dual::new(2.5, 3.0)), Some(2.5));
    }
}
