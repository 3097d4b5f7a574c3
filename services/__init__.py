"""What the tabs share and what outlives a request, without Gradio: public-mode settings, the
trust boundary every browser value passes, and visitor quotas."""
