"""Tests against the real local servers: Google's Firestore and Pub/Sub emulators and bqemulator."""
