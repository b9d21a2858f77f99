"""HubSpot: the API client, webhook signatures and the local HubSpot emulator."""
