// The wide x86 kernels besides the product (gemm.inl): the AVX transposes and the attention core's row
// passes, written once. ops/simd/x86.hpp includes this file once per AVX instruction set, inside that
// set's namespace, after defining there:
//   Vec<T>        the register type and operations (the row passes need float only)
//   ATTN_KTARGET  the function attribute that enables the instruction set
// It is not a header of its own (no include guard, no includes).

/// dst[k * ldd + j] = src[j * lds + k] for j, k < 8: an 8 x 8 block of floats transposed in AVX registers
/// (both instruction sets here include AVX2).
ATTN_KTARGET inline void transpose8x8(const float* src, Index lds, float* dst, Index ldd) {
  __m256 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // r_i0 r_(i+1)0 r_i1 r_(i+1)1 | same for 4, 5
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // r_i2 r_(i+1)2 r_i3 r_(i+1)3 | same for 6, 7
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);      // column 0 (and 4) of rows i..i+3
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);  // column 1 (and 5)
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(u[c], u[c + 4], 0x20));
    _mm256_storeu_ps(dst + (c + 4) * ldd, _mm256_permute2f128_ps(u[c], u[c + 4], 0x31));
  }
}

/// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: an out-of-place transpose (float: 8 x 8
/// blocks through registers, the edges one by one).
template <class T>
ATTN_KTARGET inline void transpose(const T* src, Index lds, Index rows, Index cols, T* dst, Index ldd) {
  Index i8 = 0, j8 = 0;
  if constexpr (std::is_same_v<T, float>) {
    i8 = rows / 8 * 8;
    j8 = cols / 8 * 8;
    for (Index i = 0; i < i8; i += 8)
      for (Index j = 0; j < j8; j += 8) transpose8x8(src + i * lds + j, lds, dst + j * ldd + i, ldd);
  }
  for (Index i = 0; i < i8; ++i)
    for (Index j = j8; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
  for (Index i = i8; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

// ---- Row passes of the attention core (float). Same contracts as ops::detail::RowOps (row_ops.hpp).

/// exp(x) for x <= 0, as RowOps<float>::exp_nonpositive: Cody-Waite reduction, degree-5 polynomial,
/// 2^n from the exponent bits, x clamped at -87; NaN stays NaN.
ATTN_KTARGET inline typename Vec<float>::P exp_nonpositive(typename Vec<float>::P x_in) {
  using V = Vec<float>;
  using P = typename V::P;
  const P shifter = V::set1(12582912.0f);  // 1.5·2^23
  const P x = V::max(V::set1(-87.0f), x_in);  // max(a, b) gives b when either is NaN
  const P t = V::fmadd(x, V::set1(1.44269504088896341f), shifter);
  const P nf = V::sub(t, shifter);
  P r = V::fmadd(nf, V::set1(-0.693359375f), x);
  r = V::fmadd(nf, V::set1(2.12194440e-4f), r);
  P y = V::fmadd(V::set1(1.9875691500e-4f), r, V::set1(1.3981999507e-3f));
  y = V::fmadd(y, r, V::set1(8.3334519073e-3f));
  y = V::fmadd(y, r, V::set1(4.1665795894e-2f));
  y = V::fmadd(y, r, V::set1(1.6666665459e-1f));
  y = V::fmadd(y, r, V::set1(5.0000001201e-1f));
  y = V::fmadd(y, V::mul(r, r), V::add(r, V::set1(1.0f)));
  return V::times_pow2(y, t, shifter);
}

ATTN_KTARGET inline float row_max(const float* z, Index n) {
  using V = Vec<float>;
  Index c = 0;
  auto vmax = V::set1(-std::numeric_limits<float>::infinity());
  for (; c + V::W <= n; c += V::W) vmax = V::max(vmax, V::load(z + c));
  float mx = V::hmax(vmax);
  for (; c < n; ++c) mx = std::max(mx, z[c]);
  return mx;
}

ATTN_KTARGET inline float prepare(float* z, Index n, Index ce, float scale, const float* bias, const bool* keep) {
  using V = Vec<float>;
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  Index c = 0;
  const auto vs = V::set1(scale);
  auto vmax = V::set1(neg_inf);
  if (bias != nullptr) {
    for (; c + V::W <= ce; c += V::W) {
      const auto x = V::fmadd(V::load(z + c), vs, V::load(bias + c));
      V::store(z + c, x);
      vmax = V::max(vmax, x);
    }
  } else {
    for (; c + V::W <= ce; c += V::W) {
      const auto x = V::mul(V::load(z + c), vs);
      V::store(z + c, x);
      vmax = V::max(vmax, x);
    }
  }
  float mx = V::hmax(vmax);
  for (; c < ce; ++c) {
    float x = z[c] * scale;
    if (bias != nullptr) x += bias[c];
    z[c] = x;
    mx = std::max(mx, x);
  }
  std::fill(z + ce, z + n, neg_inf);
  if (keep == nullptr) return mx;
  bool masked = false;
  for (c = 0; c < ce; ++c)
    if (!keep[c]) {
      z[c] = neg_inf;
      masked = true;
    }
  return masked ? row_max(z, ce) : mx;
}

ATTN_KTARGET inline float exp_sum(float* z, Index n, float m) {
  using V = Vec<float>;
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  Index c = 0;
  const auto vm = V::set1(m);
  const auto ninf = V::set1(neg_inf);
  auto vsum = V::zero();
  for (; c + V::W <= n; c += V::W) {
    const auto x = V::load(z + c);
    const auto e = V::keep_unless(exp_nonpositive(V::sub(x, vm)), x, ninf);  // NaN stays NaN
    V::store(z + c, e);
    vsum = V::add(vsum, e);
  }
  float sum = V::hsum(vsum);
  for (; c < n; ++c) {
    const float e = z[c] == neg_inf ? 0.0f : std::exp(z[c] - m);
    z[c] = e;
    sum += e;
  }
  return sum;
}
