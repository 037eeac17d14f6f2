"""Evaluation: FID, precision and recall on the standard FID Inception's features; BLEU and ROUGE; the model
families measured side by side."""
