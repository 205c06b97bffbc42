/* vmath.h -- the library's vector math (exp, erf, the normal CDF and
 * density) written once for any width of GCC's generic vectors: a
 * template, included with
 *   VF, VI   the float vector type and its int32 twin (v8f, v8i)
 *   VN(f)    the name of function f at this width (f itself for 8 lanes)
 *   VFN      the functions' attributes (static, always inlined, and the
 *            target where it is wider than the build's)
 *   VDUP(x)  x in every lane; VFMA(a, b, c) one fused a*b + c
 * kern_int.h instantiates it for 8 lanes (vec.h's v8f), vmath16.h for 16
 * in AVX-512 (gelu.c, attn512.c). Every lane does the same IEEE operations in the same order
 * whatever the width, so a 16-lane loop gives the 8-lane bits (checked
 * by test_kern_gelu and test_kern_attn512). No include guard: it is included once per width,
 * and undefines its parameters at the end. */

#define VSEL(c, a, b) ((VF)(((VI)(a) & (c)) | ((VI)(b) & ~(c))))
#define VABS(x) ((VF)((VI)(x) & 0x7fffffff))

/* exp(x) for x in [-87, 88] (clamped above), within 2 ulp: Cody-Waite
 * reduction by ln 2 and Cephes' degree-6 polynomial, 2^n built in the
 * exponent. Below -87 it is exactly 0 (the true value, under 1.7e-38, is
 * at most 2^-126 away): never a subnormal, nor a value whose products
 * are. A shifted Swin window's -100 mask puts many scores there, and
 * softmax's exp(-87)/sum was subnormal, and every operation giving a
 * subnormal is a microcode assist: attention_forward on windows of 36
 * with 3/7 of every window's scores masked ran ten times slower (165
 * against 17 us a window and head, one thread, a bench not committed;
 * bench/attnbench.c times attention now). attn512.c's vexp16 is this in 16
 * lanes (vmath16.h). */
VFN VF
VN(vexp)(VF x)
{
	VI under = x < VDUP(-87.0f);
	x = VSEL(under, VDUP(-87.0f), x);
	x = VSEL(x > VDUP(88.0f), VDUP(88.0f), x);
	VF n = (x * VDUP(1.44269504088896341f) + VDUP(12582912.0f)) - VDUP(12582912.0f);
	VF r = x - n * VDUP(0.693359375f);
	r = r - n * VDUP(-2.12194440e-4f);
	VF p = VDUP(1.9875691500e-4f);
	p = VFMA(p, r, VDUP(1.3981999507e-3f));
	p = VFMA(p, r, VDUP(8.3334519073e-3f));
	p = VFMA(p, r, VDUP(4.1665795894e-2f));
	p = VFMA(p, r, VDUP(1.6666665459e-1f));
	p = VFMA(p, r, VDUP(5.0000001201e-1f));
	p = VFMA(p * r, r, r) + VDUP(1.0f);
	VI e = (__builtin_convertvector(n, VI) + 127) << 23;
	return VSEL(under, VDUP(0.0f), p * (VF)e);
}

/* x*x = sq + lo exactly (|x| < 1e18): lo, the rounding error of the
 * square, is one fused multiply-add where the build has FMA, else
 * Dekker's product of Veltkamp's halves, which is exact too and so the
 * same lo (the fma is 2 operations of the 12) */
VFN void
VN(vsquare)(VF x, VF *sq, VF *lo)
{
	*sq = x * x;
#ifdef __FMA__
	*lo = VFMA(x, x, -*sq);
#else
	VF c = VDUP(4097.0f) * x, hi = c - (c - x), l = x - hi;
	*lo = ((hi * hi - *sq) + VDUP(2.0f) * hi * l) + l * l;
#endif
}

/* erfc(a) for a >= 0.85: exp(-a^2) * Q(1/(1+a)), Q a degree-9 fit of
 * erfcx on [0.85, 9.5] (relative error 2e-7 in float; verfcx_q); 0 beyond 9.5.
 * sq + sqlo = a^2 to twice float precision, so that the rounding of a^2
 * costs no relative accuracy in the tail. */
VFN VF
VN(verfcx_q)(VF a)
{
	VF t = VDUP(1.0f) / (VDUP(1.0f) + a);
	VF q = VDUP(7.708181417e-01f);
	q = VFMA(q, t, VDUP(-1.335549300e+00f));
	q = VFMA(q, t, VDUP(-3.278658016e-01f));
	q = VFMA(q, t, VDUP(2.380689977e+00f));
	q = VFMA(q, t, VDUP(-1.837985056e+00f));
	q = VFMA(q, t, VDUP(5.464004805e-03f));
	q = VFMA(q, t, VDUP(2.372374490e-01f));
	q = VFMA(q, t, VDUP(5.684477412e-01f));
	q = VFMA(q, t, VDUP(5.639641058e-01f));
	q = VFMA(q, t, VDUP(5.096665150e-06f));
	return q;
}

VFN VF
VN(verfc_big)(VF a, VF sq, VF sqlo)
{
	VF q = VN(verfcx_q)(a);
	VI in = a < VDUP(9.5f);
	VF e = VN(vexp)(-VSEL(in, sq, VDUP(90.25f))) * (VDUP(1.0f) - sqlo);
	return VSEL(in, q * e, VDUP(0.0f));
}

/* erf(z) for |z| < 0.85: z * P(z^2), P a degree-6 fit (1.3e-7 relative) */
VFN VF
VN(verf_small)(VF z)
{
	VF u = z * z;
	VF p = VDUP(8.955261692e-05f);
	p = VFMA(p, u, VDUP(-8.268684433e-04f));
	p = VFMA(p, u, VDUP(5.211164721e-03f));
	p = VFMA(p, u, VDUP(-2.686313615e-02f));
	p = VFMA(p, u, VDUP(1.128375744e-01f));
	p = VFMA(p, u, VDUP(-3.761263746e-01f));
	p = VFMA(p, u, VDUP(1.128379167e+00f));
	return z * p;
}

/* erf(z) within a few ulp on the whole line */
VFN VF
VN(verf)(VF z)
{
	VF a = VABS(z);
	VI small = a < VDUP(0.85f);
	VF ab = VSEL(small, VDUP(0.85f), a), sq, lo;
	VN(vsquare)(ab, &sq, &lo);
	VF big = VDUP(1.0f) - VN(verfc_big)(ab, sq, lo);
	big = VSEL(z < VDUP(0.0f), -big, big);
	return VSEL(small, VN(verf_small)(z), big);
}

/* Phi(x) = (1 + erf(x/sqrt2))/2, the standard normal CDF. For x < 0 it is
 * erfc(|x|/sqrt2)/2, without cancellation; the exponent x^2/2 is taken
 * from x itself, not from the rounded x/sqrt2. */
VFN VF
VN(vncdf)(VF x)
{
	VF z = x * VDUP(0.70710678118654752f), a = VABS(z);
	VI small = a < VDUP(0.85f);
	VF xb = VSEL(small, VDUP(1.2020815f), x), sq, lo;	/* 0.85 sqrt2 */
	VN(vsquare)(xb, &sq, &lo);
	VF c = VDUP(0.5f) * VN(verfc_big)(VSEL(small, VDUP(0.85f), a), VDUP(0.5f) * sq, VDUP(0.5f) * lo);
	VF big = VSEL(z < VDUP(0.0f), c, VDUP(1.0f) - c);
	return VSEL(small, VDUP(0.5f) + VDUP(0.5f) * VN(verf_small)(z), big);
}

/* Phi(x) and the density phi(x) together, as vncdf and vnpdf give them
 * (the same values), with one exponential: exp(-x^2/2) is phi's and, where
 * |x|/sqrt2 >= 0.85, erfc's factor too (GELU's backward needs both) */
VFN void
VN(vncdf_npdf)(VF x, VF *cdf, VF *pdf)
{
	VF z = x * VDUP(0.70710678118654752f), a = VABS(z), sq, lo;
	VI small = a < VDUP(0.85f);
	VN(vsquare)(x, &sq, &lo);
	VF e = VN(vexp)(VDUP(-0.5f) * sq) * (VDUP(1.0f) - VDUP(0.5f) * lo);
	VF ab = VSEL(small, VDUP(0.85f), a);
	VI in = ab < VDUP(9.5f);	/* beyond, e is 0 (or NaN: x^2 overflows) */
	*pdf = VSEL(in, VDUP(0.398942280401432678f) * e, VDUP(0.0f));
	VF c = VDUP(0.5f) * VSEL(in, VN(verfcx_q)(ab) * e, VDUP(0.0f));
	VF big = VSEL(z < VDUP(0.0f), c, VDUP(1.0f) - c);
	*cdf = VSEL(small, VDUP(0.5f) + VDUP(0.5f) * VN(verf_small)(z), big);
}

#undef VSEL
#undef VABS
#undef VF
#undef VI
#undef VN
#undef VFN
#undef VDUP
#undef VFMA
