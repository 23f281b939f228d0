"""What demo/app.py and its Space call: canvas preprocessing, redrawn test digits, the Hugging Face Hub."""
