"""Time series: autoregressive models of numbers, AR(p), fitted with statsmodels."""
