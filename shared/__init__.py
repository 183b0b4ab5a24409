"""What every part of the fleet agrees on: settings, wire contracts, topology, DVSA rules and client."""
