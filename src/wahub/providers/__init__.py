"""Provider adapters: one port (``base.Provider``), one module per provider."""
