"""The PLC gateway: how the HMI reaches equipment over OPC UA (no Textual, no audit)."""
