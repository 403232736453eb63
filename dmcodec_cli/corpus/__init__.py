"""Corpus tokenization: folders / manifests -> batched, windowed, resumable encoding -> HDF5 code store."""
