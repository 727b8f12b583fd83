"""Files in and out: the one atomic writer, still images, video, and frame sources/sinks for image, folder, video."""
