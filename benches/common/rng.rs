//! The benchmarks' random numbers: xorshift64*, deterministic and dependency-free. Each bench
//! includes this file (`#[path]`) and adds what it draws from it in its own `impl Rng`.

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
