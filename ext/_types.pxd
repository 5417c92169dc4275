# Shared fused types for the compiled kernels: every kernel runs in float32 and float64.
ctypedef fused floating:
    float
    double
