from benchmarks.throughput import main

# explain_dataset's worker processes import the main module: only the command itself runs main().
if __name__ == "__main__":
    main()
