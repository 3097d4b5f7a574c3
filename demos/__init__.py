"""The tabs: one module per demo, each knowing Gradio and the services, never a vendor SDK,
torch or a vendor module. What the tabs share on the page lives in `demos.widgets`."""
